"""airmix hardware: the virtual PlutoSDR (IIOD server + AD9361 model on the simulated
medium), the lab inventory and discovery, and the hardware-in-the-loop harness.

Modules: :mod:`hardware.iiod` (protocol server), :mod:`hardware.ad9361_model` (device
model), :mod:`hardware.virtual_pluto` (radios, launcher, ``airmix virtual-pluto``),
:mod:`hardware.inventory` (TOML lab inventory, libiio discovery).
"""
