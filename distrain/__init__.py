"""distrain: decentralized training on Bittensor.

Miners train one shared model together, exchanging compressed pseudo-gradients over a hivemind DHT;
validators measure each miner's loss improvement on held-out data and turn it into chain weights.
"""

__version__ = "0.1.0"
