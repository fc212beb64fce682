"""airmix physical layer: waveforms, synchronization, channel estimation, power control,
over-the-air aggregation, channel models and the simulated shared medium.

`phy` imports nothing else from airmix; every other package may import it.
"""
