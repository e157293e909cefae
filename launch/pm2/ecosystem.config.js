// pm2 keeps a distrain miner and validator running on one box: it restarts them when they exit,
// keeps their logs, and brings them back at boot (`pm2 save && pm2 startup`).
//
//   export DISTRAIN_INITIAL_PEERS=/ip4/BOOTSTRAP_IP/tcp/31337/p2p/PEER_ID  # the run's DHT peer(s)
//   export DISTRAIN_GENESIS=1767225600                                   # the run's round-0 unix time
//   pm2 start launch/pm2/ecosystem.config.js                    # both apps
//   pm2 start launch/pm2/ecosystem.config.js --only distrain-miner
//   pm2 logs distrain-miner
//
// Settings are read from the environment when pm2 reads this file (so `pm2 restart` keeps them;
// change one with `pm2 delete <app>` and a new `pm2 start`). Paths are relative to the repository.

const path = require("path");

const env = process.env;
const repo = path.resolve(__dirname, "..", "..");

function required(name, meaning) {
  const value = (env[name] || "").trim();
  if (!value) {
    throw new Error(`launch/pm2/ecosystem.config.js: set ${name} (${meaning})`);
  }
  return value;
}

const initialPeers = required("DISTRAIN_INITIAL_PEERS", "multiaddr(s) of the run's DHT bootstrap peer").split(/\s+/);
const genesis = required("DISTRAIN_GENESIS", "the run's round-0 unix time");
const walletPath = env.DISTRAIN_WALLET_PATH || path.join(env.HOME || "~", ".bittensor", "wallets");
const model = env.DISTRAIN_MODEL || "llama-125m"; // a folder of recipes/
const acceleratorConfig = env.DISTRAIN_ACCELERATE_CONFIG || "recipes/accelerate_configs/single_gpu.yaml";

// What both apps share: pm2 runs the command itself (no node interpreter), restarts it with a
// growing delay when it crashes, and gives it time to stop its p2pd child on shutdown.
const common = {
  cwd: repo,
  interpreter: "none",
  autorestart: true,
  exp_backoff_restart_delay: 1000, // 1 s, 1.5 s, 2.25 s ... up to 15 s between restarts of a crashing app
  max_restarts: 20, // restarts in a row that each die within min_uptime before pm2 gives up
  min_uptime: "2m", // a peer that ran this long was healthy: the restart counter resets
  kill_timeout: 30000, // SIGINT first, SIGKILL only after 30 s: distrain stops p2pd in between
  treekill: true, // on stop, signal the whole process tree, not just the launcher
  merge_logs: true,
  time: false, // every line is a JSON object with its own "time"; a pm2 prefix would break it
  env: {
    WANDB_MODE: "offline", // never prompt for a wandb login from a daemon
    HIVEMIND_LOGLEVEL: "WARNING",
    PYTHONUNBUFFERED: "1", // logs reach pm2 as they are written
  },
};

// Where (wallet, peers, clock, output) a node runs: the same flags for both roles.
function nodeArgs(role, walletName) {
  return [
    "--recipe", `recipes/${model}/${role}.yaml`,
    "--wallet.path", walletPath,
    "--wallet.name", walletName,
    "--wallet.hotkey", env.DISTRAIN_WALLET_HOTKEY || "default",
    "--initial-peers", ...initialPeers,
    "--host", env.DISTRAIN_HOST || "0.0.0.0",
    "--port", env[`DISTRAIN_${role.toUpperCase()}_PORT`] || (role === "miner" ? "31338" : "31339"),
    "--genesis", genesis,
    "--out", `runs/${model}/${role}`,
    "--log.format", "json", // one JSON object per line, no progress bar: for pm2 logs and log shippers
  ];
}

module.exports = {
  apps: [
    {
      ...common,
      name: "distrain-miner",
      // Trains through accelerate (GPU, bf16); single_gpu.yaml starts one process.
      script: "accelerate",
      args: [
        "launch", "--config_file", acceleratorConfig,
        "-m", "distrain", "miner",
        ...nodeArgs("miner", env.DISTRAIN_MINER_WALLET || "miner"),
      ],
    },
    {
      ...common,
      name: "distrain-validator",
      // Evaluates but does not train: no accelerate launch needed.
      script: "distrain",
      args: ["validator", ...nodeArgs("validator", env.DISTRAIN_VALIDATOR_WALLET || "validator")],
    },
  ],
};
