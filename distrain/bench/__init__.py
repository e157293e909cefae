"""`distrain bench ...`: measurements behind the project's claims, printed as tables or JSON.

The commands register in `distrain.bench.commands`; this package imports nothing itself, so that
`python -m distrain.bench.rounds` runs without the swarm's dependencies (hivemind, the bittensor SDK).
"""
