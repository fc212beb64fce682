"""Radio back-ends of a run: where the users' radios and the receiver come from.

One interface, :class:`RunRadios`, with peer implementations selected by the experiment's
``channel.radio`` (registry :data:`RUN_RADIOS`). The node code never changes between
them: it only opens the URIs it is given.

* ``sim``: the orchestrator owns a :class:`~phy.medium.SharedMedium`, re-created at each
  round from a seed derived from (experiment seed, round) so a resumed run sees exactly
  the channel an uninterrupted one would (fading is drawn per round: block fading).
  Users' radios are served to node processes by a :class:`~radio.sim_net.RadioService`
  (``simnet://`` URIs); the receiver is a local :class:`~radio.sim.SimRadio`.
* ``virtual-pluto``: ``count + 1`` virtual PlutoSDRs (libiio network protocol) on one
  medium for the whole run; users and receiver are :class:`~radio.pluto.PlutoRadio` s on
  ``ip:127.0.0.1:PORT``, exactly as lab radios would be.

SNR convention (as :mod:`studies.phy_demo`): every link has the same path loss and
the receiver noise is set so a user sending at full power (RMS ``OfdmConfig.amplitude``)
through a unit-gain channel arrives ``channel.snr_db`` above the noise.

Eavesdropper (``attacks.eavesdropper``, on ``sim`` and ``virtual-pluto``): a *passive*
radio ``eve`` on the same medium (:meth:`phy.medium.SharedMedium.add_radio`), with its
own oscillator error, LO phase, noise and independent fading to every user; it never
shifts a random draw of the receiver's or the users' channel. The users' links to it
have the path loss that puts a unit-gain user at ``attacks.eavesdropper_snr_db``.
:meth:`RunRadios.eavesdrop` renders what it heard over the same medium time as the
receiver's last read (:meth:`phy.medium.MediumPort.capture`, pure: no clock or stream
moves). On ``inventory`` (lab radios) there is no eavesdropper: a lab radio cannot
capture the receiver's window of air (``orchestrator.config`` rejects enabling it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from orchestrator import experiment as ex
from orchestrator.config import ExperimentConfig
from phy.eavesdropper import receiver_window
from phy.link_budget import PATH_LOSS_DB, noise_dbfs_for
from phy.medium import MediumPort, SharedMedium, register_medium, unregister_medium
from phy.registry import Registry
from phy.waveform import OfdmConfig
from radio import Radio, RadioConfig, open_radio

RECEIVER = "rx"
EAVESDROPPER = "eve"


def radio_config(config: ExperimentConfig) -> RadioConfig:
    """RF settings of every radio in a run (full transmit power, 0 dB RX gain)."""
    return RadioConfig(
        center_hz=config.channel.carrier_hz,
        sample_rate_hz=config.channel.sample_rate_hz,
        tx_attenuation_db=0.0,
        rx_gain_db=0.0,
        rx_buffer_size=16384,
    )


def medium_kwargs(config: ExperimentConfig, ofdm: OfdmConfig) -> dict:
    """SharedMedium settings realising ``channel.snr_db`` (see the module docstring)."""
    noise_dbfs = noise_dbfs_for(config.channel.snr_db, ofdm)
    return {
        "noise_dbfs": noise_dbfs,
        "default_path_loss_db": PATH_LOSS_DB,
        "channel_model": config.channel.fading,
        "ppm_range": config.channel.max_ppm,
        # the cyclic loop of the ideal time base needs constant start latency; the
        # stream and tdd time bases run on realistic buffer timing (phy.medium)
        "timing": "ideal" if config.channel.time_base == "ideal" else "realistic",
        "sync_period_s": config.channel.sync_period_s
        if config.channel.time_base == "tdd"
        else None,
    }


class RunRadios(ABC):
    """The radios of one run: a URI per user (opened by nodes) and the receiver."""

    receiver: Radio

    @abstractmethod
    def user_uri(self, user_id: str) -> str:
        """URI a node opens for ``user_id``."""

    @abstractmethod
    def start_round(self, round_id: int) -> None:
        """Prepare the air for a round (the receiver is configured afterwards)."""

    @abstractmethod
    def silence(self, user_ids: list[str]) -> None:
        """The node hosting ``user_ids`` died: make sure their radios stop transmitting."""

    @abstractmethod
    def close(self) -> None:
        """Release every radio and server."""

    def eavesdrop(self, n_samples: int) -> np.ndarray | None:
        """What the run's eavesdropper radio heard over the receiver's last ``n_samples``
        samples (complex64 ``(n_samples,)``), or None when the run has no eavesdropper.

        The window starts where the receiver's last read started: the OTA receiver
        (:meth:`radio.ota_session.OtaReceiver.capture`) reads whole receive buffers and
        uses their first ``n_samples``, where the users' frames are placed."""
        return None


def add_eavesdropper(
    config: ExperimentConfig, medium: SharedMedium, user_radios: list[str]
) -> MediumPort:
    """Put the passive eavesdropper radio on ``medium`` (after every other radio) with
    the run's RF settings; the links from ``user_radios`` (names on the medium) get the
    path loss realising ``attacks.eavesdropper_snr_db`` (see the module docstring)."""
    rf = radio_config(config)
    eve = medium.add_radio(
        EAVESDROPPER,
        passive=True,
        lo_hz=rf.center_hz,
        sample_rate_hz=rf.sample_rate_hz,
        tx_attenuation_db=rf.tx_attenuation_db,
        rx_gain_db=rf.rx_gain_db,
        rx_buffer_size=rf.rx_buffer_size,
    )
    loss = PATH_LOSS_DB + config.channel.snr_db - config.attacks.eavesdropper_snr_db
    for name in user_radios:
        medium.set_link(name, EAVESDROPPER, path_loss_db=loss)
    return eve


def capture_receiver_window(
    receiver: MediumPort, eavesdropper: MediumPort, n_samples: int, block: int
) -> np.ndarray | None:
    """``eavesdropper``'s capture of ``n_samples`` over the air of ``receiver``'s last
    slot (stream read or TDD capture, :func:`phy.eavesdropper.receiver_window`); None
    if the receiver never read."""
    start = receiver_window(receiver, n_samples, block)
    return None if start is None else eavesdropper.capture(start, int(n_samples))


class SimRunRadios(RunRadios):
    """``sim``: a fresh seeded medium per round, users served over ``simnet://``."""

    def __init__(self, config: ExperimentConfig, run_name: str) -> None:
        from radio.sim_net import RadioService

        self.config = config
        self.medium_name = f"run-{run_name}"
        self._kwargs = medium_kwargs(config, ex.ofdm_config(config))
        self.medium: SharedMedium | None = None
        self.receiver = None
        self.eve: MediumPort | None = None
        self.service = RadioService(lambda name: open_radio(f"sim://{self.medium_name}/{name}"))

    def user_uri(self, user_id: str) -> str:
        return self.service.uri(user_id)

    def start_round(self, round_id: int) -> None:
        if self.medium is not None and self.config.channel.time_base != "ideal":
            # stream/tdd: streams and clocks run on over the rounds; block fading redrawn
            self.medium.redraw_fading()
            return
        self.medium = SharedMedium(rng=ex.rng_for(self.config, "medium", round_id), **self._kwargs)
        register_medium(self.medium_name, self.medium)
        self.service.reset()
        if self.receiver is not None:
            self.receiver.close()
        self.receiver = open_radio(f"sim://{self.medium_name}/{RECEIVER}")
        for user_id in ex.user_ids(self.config):
            self.service.open(user_id)  # every user's port exists before the first slot
        self.receiver.configure(radio_config(self.config))
        if self.config.attacks.eavesdropper:  # last, and passive: no draw above changes
            self.eve = add_eavesdropper(self.config, self.medium, ex.user_ids(self.config))

    def eavesdrop(self, n_samples: int) -> np.ndarray | None:
        if self.eve is None or self.medium is None:
            return None
        block = self.receiver.config.rx_buffer_size
        return capture_receiver_window(self.medium.port(RECEIVER), self.eve, n_samples, block)

    def silence(self, user_ids: list[str]) -> None:
        """Radios served here outlive their node process (they live in the service), so
        a dead node's cyclic frame would keep playing into other groups' slots."""
        for user_id in user_ids:
            self.service.open(user_id).stop_transmit()

    def close(self) -> None:
        if self.receiver is not None:
            self.receiver.close()
        self.service.close()
        unregister_medium(self.medium_name)


class VirtualPlutoRunRadios(RunRadios):
    """``virtual-pluto``: users and receiver are virtual Plutos on one medium."""

    def __init__(self, config: ExperimentConfig, run_name: str) -> None:
        from hardware.virtual_pluto import VirtualPlutoLab

        self.config = config
        kwargs = medium_kwargs(config, ex.ofdm_config(config))
        self.lab = VirtualPlutoLab(
            config.users.count + 1,
            seed=int(ex.named_seed(config, "virtual-pluto").generate_state(1)[0]),
            medium_name=f"run-{run_name}",
            **kwargs,
        )
        self.lab.start()
        self._uris = dict(zip(ex.user_ids(config), self.lab.uris[:-1], strict=True))
        self.receiver = open_radio(self.lab.uris[-1])
        self.receiver.configure(radio_config(config))
        self.eve: MediumPort | None = None
        if config.attacks.eavesdropper:  # the lab runs in this process: same medium
            users = [radio.name for radio in self.lab.radios[:-1]]
            self.eve = add_eavesdropper(config, self.lab.medium, users)

    def eavesdrop(self, n_samples: int) -> np.ndarray | None:
        if self.eve is None:
            return None
        block = self.receiver.config.rx_buffer_size
        return capture_receiver_window(self.lab.radios[-1].port, self.eve, n_samples, block)

    def user_uri(self, user_id: str) -> str:
        return self._uris[user_id]

    def start_round(self, round_id: int) -> None:
        """The lab's medium persists over the run (real radios do not reset either)."""

    def silence(self, user_ids: list[str]) -> None:
        """Nothing to do: a Pluto's cyclic TX buffer is destroyed, and stops, when the
        dead client's buffer connection drops."""

    def close(self) -> None:
        self.receiver.close()
        self.lab.stop()


class InventoryRunRadios(RunRadios):
    """``inventory``: lab PlutoSDRs listed in ``channel.inventory`` (a TOML file, see
    :mod:`hardware.inventory`): the first ``receiver`` entry receives, ``user`` entries
    are assigned to users in file order. Their RF settings are the run's; SNR and
    fading are whatever the lab's air gives."""

    def __init__(self, config: ExperimentConfig, run_name: str) -> None:
        from hardware.inventory import load_inventory

        inventory = load_inventory(config.channel.inventory)
        receivers, users = inventory.by_role("receiver"), inventory.by_role("user")
        ids = ex.user_ids(config)
        if not receivers or len(users) < len(ids):
            raise ValueError(
                f"{config.channel.inventory}: need 1 receiver and {len(ids)} user radios, "
                f"found {len(receivers)} and {len(users)}"
            )
        self._uris = {u: entry.open_uri for u, entry in zip(ids, users, strict=False)}
        self.receiver = open_radio(receivers[0].open_uri)
        self.receiver.configure(radio_config(config))

    def user_uri(self, user_id: str) -> str:
        return self._uris[user_id]

    def start_round(self, round_id: int) -> None:
        """Real radios keep their state between rounds."""

    def silence(self, user_ids: list[str]) -> None:
        """Nothing to do: when a node process dies its libiio connections close and the
        radio destroys (stops) its cyclic TX buffer."""

    def close(self) -> None:
        self.receiver.close()


#: ``channel.radio`` -> the run's radios
RUN_RADIOS: Registry[type[RunRadios]] = Registry(
    "radio back-end",
    {
        "sim": SimRunRadios,
        "virtual-pluto": VirtualPlutoRunRadios,
        "inventory": InventoryRunRadios,
    },
)
