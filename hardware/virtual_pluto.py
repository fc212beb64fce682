"""Virtual ADALM-PLUTO radios: the AD9361 device model served over IIOD, with its RF
side on a :class:`phy.medium.SharedMedium`.

* :class:`VirtualPluto` - one radio: :class:`~hardware.ad9361_model.AD9361Model` +
  :class:`~phy.medium.MediumPort` + :class:`~hardware.iiod.IIODServer`. Device attribute
  writes are applied to the port physically (LO retune -> new LO phase, sample rate, RF
  bandwidth, RX gain, TX attenuation, XO correction -> oscillator error); RX buffers
  stream from the port (stale kernel buffers, overflow in real-time mode, 12-bit
  samples ``le:S12/16>>0``), TX buffers (16-bit words, the DAC keeps the 12 MSBs) go
  on the air cyclically or once. Slow/fast-attack AGC adjusts the RX gain per buffer.
* :class:`VirtualPlutoLab` - N radios on one medium (a context manager), one TCP port
  each, URIs ``ip:127.0.0.1:PORT``.
* ``airmix virtual-pluto --radios N [--seed S] [--realtime] [--base-port P]`` - this
  module's :func:`add_arguments`/:func:`main`.

Known simplifications (the medium has one LO, one sample clock and one bandwidth per
radio): the port follows the LO written last (RX_LO or TX_LO), the RX RF bandwidth,
and one FPGA /8 rate for both directions; the DDS (hardware.dds) renders at the port's
rate; one-shot TX buffers start when pushed
(a new push replaces one still playing).
"""

from __future__ import annotations

import argparse
import errno
import math
import signal
import threading
import time
from typing import Any

import numpy as np

from hardware.ad9361_model import AD9361Model
from hardware.iiod import (
    BufferBackend,
    BufferSession,
    Device,
    IIODServer,
    IIOError,
    deinterleave,
    interleave,
    sample_size,
)
from hardware.pluto_devicetree import DT_PROPERTIES
from hardware.registers import ADC_OVERFLOW, DAC_UNDERFLOW
from hardware.tdd import TddEngine, firmware_at_least
from phy.link_budget import PATH_LOSS_DB, noise_dbfs_for
from phy.medium import MediumPort, SharedMedium, register_medium, unregister_medium
from radio.pluto import CLOCK_ATTR

RX_FULL_SCALE = 2048  # 12-bit ADC codes, le:S12/16>>0
TX_FULL_SCALE = 32768  # 16-bit DAC words, 12 MSBs used
#: slow-attack AGC, as the device tree sets it up (stock Pluto): every
#: ``agc-gain-update-interval-us`` the gain steps down above the inner high threshold
#: (10 dB below full scale; faster above the outer one, 5 dB), holds down to the inner
#: low one (12 dB) and steps up below it (faster below the outer low one, 18 dB)
_DT = dict(DT_PROPERTIES)
AGC_UPDATE_S = _DT["adi,agc-gain-update-interval-us"] * 1e-6
AGC_INNER_HIGH_DBFS = -_DT["adi,agc-inner-thresh-high"]
AGC_INNER_LOW_DBFS = -_DT["adi,agc-inner-thresh-low"]
AGC_STEPS_DB = (  # (level above which, gain step in dB), checked in order
    (-_DT["adi,agc-outer-thresh-high"], -_DT["adi,agc-outer-thresh-high-dec-steps"]),
    (AGC_INNER_HIGH_DBFS, -_DT["adi,agc-inner-thresh-high-dec-steps"]),
    (AGC_INNER_LOW_DBFS, 0),
    (-_DT["adi,agc-outer-thresh-low"], _DT["adi,agc-inner-thresh-low-inc-steps"]),
    (-math.inf, _DT["adi,agc-outer-thresh-low-inc-steps"]),
)
AGC_OVERLOAD_STEP_DB = -_DT["adi,agc-adc-large-overload-inc-steps"]
DEFAULT_KERNEL_BUFFERS = 4
#: Seconds a streaming TX push waits for room in the kernel queue before ETIMEDOUT.
TX_ROOM_TIMEOUT_S = 10.0


def samples_to_codes(x: np.ndarray) -> np.ndarray:
    """Complex full-scale-1.0 samples ``(n,)`` -> int16 ADC codes in [-2048, 2047],
    shape ``(n, 2)``: column 0 is I, column 1 is Q (one pass over the interleaved
    float32 view of the complex64 samples)."""
    v = np.ascontiguousarray(x, dtype=np.complex64).view(np.float32) * RX_FULL_SCALE
    np.rint(v, out=v)
    np.clip(v, -RX_FULL_SCALE, RX_FULL_SCALE - 1, out=v)
    return v.astype("<i2").reshape(-1, 2)


def words_to_samples(i: np.ndarray, q: np.ndarray) -> np.ndarray:
    """16-bit DAC words -> complex full-scale-1.0 samples on the 12-bit DAC grid."""
    i12 = np.right_shift(i.astype(np.int16), 4).astype(np.float32)
    q12 = np.right_shift(q.astype(np.int16), 4).astype(np.float32)
    return ((i12 + 1j * q12) / 2048.0).astype(np.complex64)


class _Session(BufferSession):
    def __init__(
        self, radio: VirtualPluto, device: Device, samples_count: int, mask: int, cyclic: bool
    ) -> None:
        self.radio = radio
        self.device = device
        self.samples_count = samples_count
        self.mask = mask
        self.cyclic = cyclic
        self.sample_size = sample_size(device, mask)
        # which of I (index 0) / Q (index 1) each enabled scan channel carries
        self.lanes = [
            chan.scan.index  # type: ignore[union-attr]
            for number, chan in enumerate(device.channels)
            if chan.scan is not None and mask >> number & 1
        ]
        self.closed = False
        self.pushed = False

    def read(self, nbytes: int, timeout_s: float | None) -> bytes:
        if self.device.is_output:
            raise IIOError(errno.EPERM, "cannot read from a TX buffer")
        n = nbytes // self.sample_size
        tdd = self.radio.tdd
        if tdd is not None and tdd.rx_armed:  # the RX DMA starts on the next sync pulse
            try:
                codes = samples_to_codes(self.radio.port.arm_receive(n))
            except RuntimeError as exc:  # no pulse will come: the refill times out
                raise IIOError(errno.ETIMEDOUT, str(exc)) from None
        else:
            codes = self.radio.receive_codes(n)
        if self.lanes == [0, 1]:  # both channels enabled (the usual case): already interleaved
            return codes.tobytes()
        return interleave([codes[:, lane] for lane in self.lanes])

    def write(self, data: bytes) -> None:
        if not self.device.is_output:
            raise IIOError(errno.EPERM, "cannot write to an RX buffer")
        if self.cyclic and self.pushed:
            raise IIOError(errno.EBUSY, "a cyclic buffer is pushed once")
        words = deinterleave(data, len(self.lanes))
        zeros = np.zeros(words.shape[0], np.int16)
        i = next((words[:, k] for k, lane in enumerate(self.lanes) if lane == 0), zeros)
        q = next((words[:, k] for k, lane in enumerate(self.lanes) if lane == 1), zeros)
        self.radio.model.dac.push(i, q, self.cyclic)
        samples = words_to_samples(i, q)
        port = self.radio.port
        tdd = self.radio.tdd
        if tdd is not None and tdd.tx_armed:  # gated to one frame, started by the pulse
            port.arm_transmit(samples)
        elif self.cyclic:
            port.transmit(samples, cyclic=True)
        else:  # streaming: back to back, zeros and the underflow flag if pushed too late
            port.push(samples)
            self._wait_for_room(samples.size)
        self.pushed = True

    def _wait_for_room(self, n: int, timeout_s: float = TX_ROOM_TIMEOUT_S) -> None:
        """Like a kernel with ``kernel_buffers`` TX blocks: a push returns once at most
        that many buffers are queued. Real time: sleep until then; deterministic clock:
        wait until a receiver's reads advance it (ETIMEDOUT after ``timeout_s``)."""
        port = self.radio.port
        blocks = self.radio.kernel_buffers.get(self.device.id, DEFAULT_KERNEL_BUFFERS)
        deadline = time.monotonic() + timeout_s
        while (excess := port.queued_s() - blocks * n / port.actual_sample_rate_hz) > 0:
            if time.monotonic() > deadline:
                raise IIOError(errno.ETIMEDOUT, "TX queue full: the medium clock is not moving")
            time.sleep(excess if port.medium.realtime else 0.002)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.device.is_output and self.pushed:  # the DMA stops: cyclic or streamed
            self.radio.port.stop_transmit()
        if self.device.is_output:
            self.radio.model.dac.close_dma()
            self.radio.play_dds()


class VirtualPluto(BufferBackend):
    """One virtual Pluto on ``medium``, served at ``ip:host:port``.

    Args:
        medium: the shared medium the radio transmits into and receives from.
        name: radio name on the medium (unique).
        variant: "ad9363" (stock: 325 MHz-3.8 GHz) or "ad9364" (70 MHz-6 GHz mod).
        serial: ``hw_serial`` context attribute (default derived from ``name``).
        host, port: where to listen (port 0: a free port).
        firmware: ``fw_version``; v0.39 and later have the TDD engine
            (:mod:`hardware.tdd`, ``adi.tddn``) on the medium's shared sync line.
        port_kwargs: passed to :meth:`SharedMedium.add_radio` (ppm, latency_s, position).
    """

    def __init__(
        self,
        medium: SharedMedium,
        name: str,
        *,
        variant: str = "ad9363",
        serial: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        firmware: str = "v0.39",
        **port_kwargs: Any,
    ) -> None:
        self.name = name
        self.medium = medium
        serial = serial or "1044730a1997" + name.encode().hex()[:21].ljust(21, "0")
        self.model = AD9361Model(variant, serial=serial, on_change=self._apply)
        s = self.model.state
        self.port: MediumPort = medium.add_radio(
            name,
            lo_hz=s.rx_lo_hz,
            sample_rate_hz=self.model.rx_rate_hz,
            rf_bandwidth_hz=s.rx_bw_hz,
            tx_attenuation_db=self.model.tx_atten_db,
            rx_gain_db=s.rx_gain_db,
            kernel_buffers=DEFAULT_KERNEL_BUFFERS,
            tdd_engine=firmware_at_least(firmware),
            **port_kwargs,
        )
        # firmware v0.39+: the TDD engine (hardware.tdd), its sync input on the medium's
        # shared line
        self.model.context.attrs["fw_version"] = firmware
        # a client that must drain its RX stream in the background (the wall clock runs
        # while it computes) tells a deterministic medium, which waits for it, by this
        self.model.context.attrs[CLOCK_ATTR] = "realtime" if medium.realtime else "deterministic"
        self.tdd: TddEngine | None = None
        if self.port.tdd_engine:
            self.tdd = TddEngine(lambda: self.port.sample_rate_hz, lambda: medium.pulse())
            devices = self.model.context.devices
            devices.append(self.tdd.device(f"iio:device{len(devices)}"))
        self.oscillator_ppm = self.port.ppm  # the crystal's own error
        self.model.adc_core.status_source = self._poll_overflow
        self.model.dac_core.status_source = self._poll_underflow
        self.kernel_buffers: dict[str, int] = {}
        self.server = IIODServer(
            self.model.context, self, host=host, port=port, lock=self.model.lock
        )

    # -- lifecycle ----------------------------------------------------------------
    @property
    def uri(self) -> str:
        return self.server.uri

    def start(self) -> VirtualPluto:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.port.stop_transmit()

    def __enter__(self) -> VirtualPluto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- model -> medium ----------------------------------------------------------
    def _apply(self, key: str) -> None:
        s = self.model.state
        port = self.port
        if key == "rx_lo":
            port.lo_hz = s.rx_lo_hz
        elif key == "tx_lo":
            port.lo_hz = s.tx_lo_hz
        elif key == "sample_rate":
            if port.sample_rate_hz != self.model.rx_rate_hz:
                port.sample_rate_hz = self.model.rx_rate_hz
        elif key == "rx_bw":
            port.rf_bandwidth_hz = s.rx_bw_hz
        elif key == "rx_gain":
            port.rx_gain_db = s.rx_gain_db
        elif key == "tx_atten":
            port.tx_attenuation_db = self.model.tx_atten_db
        elif key == "xo_correction":
            # the synthesizers assume the reference is xo_correction Hz; the crystal runs at
            # 40 MHz (1 + ppm): the effective error is actual / assumed - 1
            actual = 40e6 * (1.0 + self.oscillator_ppm * 1e-6)
            port.ppm = (actual / s.xo_correction_hz - 1.0) * 1e6
        elif key in ("dds", "loopback"):
            self.play_dds()

    # -- the cores' status flags from the medium (hardware.registers) -------------
    def _poll_overflow(self) -> int:
        """ADC status bits: the medium dropped RX samples (a reader too far behind)."""
        if self.port.rx_overflow:
            self.port.clear_rx_overflow()
            return ADC_OVERFLOW
        return 0

    def _poll_underflow(self) -> int:
        """DAC status bits: the TX stream's queue ran dry."""
        if self.port.tx_underflow:
            self.port.clear_tx_underflow()
            return DAC_UNDERFLOW
        return 0

    # -- DAC path: DDS tones on the air, chip loopbacks (hardware.dds) ------------
    def play_dds(self) -> None:
        """With no TX buffer open, put the DDS output on the air (one exact 2**16-sample
        period, cyclic) or silence when the DDS is off."""
        if self.model.dac.dma_open:
            return
        if self.model.dds.active and self.model.state.loopback != 2:
            self.port.transmit(words_to_samples(*self.model.dds.period_words()), cyclic=True)
        else:
            self.port.stop_transmit()

    def receive_codes(self, n: int) -> np.ndarray:
        """``n`` RX samples as 12-bit codes ``(n, 2)``. Loopback 1 (AD9361 digital
        TX->RX): what the DAC sends, ``word >> 4``, no RF; loopback 2 (FPGA RX->TX): the
        received samples are also sent out by the DAC."""
        if self.model.state.loopback == 1:
            return self.model.dac.loopback_codes(n)
        x = self.port.receive(n)
        self.after_receive(x)
        if self.model.state.loopback == 2 and x.size:
            self.port.transmit(x, cyclic=False)
        return samples_to_codes(x)

    def after_receive(self, x: np.ndarray) -> None:
        """Update RSSI and, in an AGC mode, the RX gain from a received buffer."""
        if x.size == 0:
            return
        power = float(np.mean(x.real.astype(np.float64) ** 2 + x.imag.astype(np.float64) ** 2))
        level_dbfs = 10.0 * math.log10(max(power, 1e-15))
        peak = float(max(np.max(np.abs(x.real)), np.max(np.abs(x.imag))))
        with self.model.lock:
            s = self.model.state
            s.rssi_db = max(0.0, -(level_dbfs - s.rx_gain_db))
            if s.gain_mode == "manual":
                return
            if s.gain_mode == "fast_attack":  # settles at once, mid-way in the window
                inside = AGC_INNER_LOW_DBFS <= level_dbfs <= AGC_INNER_HIGH_DBFS
                middle = (AGC_INNER_LOW_DBFS + AGC_INNER_HIGH_DBFS) / 2
                step = 0.0 if inside else middle - level_dbfs
                step = min(step, -6.0) if peak >= 2047 / 2048 else step
            else:  # one step per update interval of the buffer's air time
                air_s = x.size / self.port.actual_sample_rate_hz
                updates = max(1, round(air_s / AGC_UPDATE_S))
                step, level = 0.0, level_dbfs
                if peak >= 2047 / 2048:  # ADC overload: the large step first
                    step, level = AGC_OVERLOAD_STEP_DB, level_dbfs + AGC_OVERLOAD_STEP_DB
                    updates -= 1
                for _ in range(updates):
                    delta = next(d for above, d in AGC_STEPS_DB if level > above)
                    if delta == 0:
                        break
                    step, level = step + delta, level + delta
            new_gain = int(round(s.rx_gain_db + step))
            if new_gain != s.rx_gain_db:
                self.model.set_agc_gain(new_gain)

    # -- BufferBackend ------------------------------------------------------------
    def open(self, device: Device, samples_count: int, mask: int, cyclic: bool) -> BufferSession:
        if device.name not in ("cf-ad9361-lpc", "cf-ad9361-dds-core-lpc"):
            raise IIOError(errno.EINVAL, f"{device.name} has no buffer")
        if samples_count <= 0:
            raise IIOError(errno.EINVAL, "samples_count must be positive")
        session = _Session(self, device, samples_count, mask, cyclic)
        if not session.lanes:
            raise IIOError(errno.EINVAL, "no scan channel enabled in the mask")
        if device.is_output:  # a new TX buffer starts a new DMA stream: the old one ended
            self.port.stop_transmit()
            self.model.dac.open_dma()
        if not device.is_output:
            if cyclic:
                raise IIOError(errno.EINVAL, "RX buffers cannot be cyclic")
            self.port.kernel_buffers = self.kernel_buffers.get(device.id, DEFAULT_KERNEL_BUFFERS)
            if self.port.rx_buffer_size != samples_count:
                self.port.rx_buffer_size = samples_count  # restarts the RX stream
            else:
                # enabling the buffer starts from the buffer being filled now: drop what the
                # kernel held while the buffer was closed (none in deterministic mode, so
                # consecutive buffers stay sample-contiguous)
                self.port.flush()
        return session

    def set_kernel_buffers(self, device: Device, count: int) -> None:
        if count < 1:
            raise IIOError(errno.EINVAL, "need at least one kernel buffer")
        self.kernel_buffers[device.id] = count


class VirtualPlutoLab:
    """N virtual Plutos on one shared medium, each on its own TCP port.

    Args:
        n_radios: number of radios (named ``pluto0``..).
        seed: medium seed (reproduces oscillator errors, latencies, fading, noise).
        realtime: wall-clock medium (blocking reads, overflow) instead of deterministic.
        base_port: first TCP port (radio k listens on base_port + k); 0: free ports.
        host: address to bind.
        variant: "ad9363" or "ad9364" for every radio.
        medium: an existing medium to use instead of creating one.
        medium_name: name to register the medium under (for sim:// radios on the same air).
        firmware: ``fw_version`` of every radio (v0.39+: TDD engine).
        medium_kwargs: passed to :class:`SharedMedium` when creating it, e.g.
            ``sync_period_s`` (the shared sync line pulses periodically, like a 1 PPS).
    """

    def __init__(
        self,
        n_radios: int,
        *,
        seed: int = 0,
        realtime: bool = False,
        base_port: int = 0,
        host: str = "127.0.0.1",
        variant: str = "ad9363",
        medium: SharedMedium | None = None,
        medium_name: str | None = "virtual-pluto",
        firmware: str = "v0.39",
        **medium_kwargs: Any,
    ) -> None:
        if n_radios < 1:
            raise ValueError(f"n_radios must be >= 1, got {n_radios}")
        if not 0 <= base_port <= 65535 - n_radios:
            raise ValueError(f"base_port must be in 0..{65535 - n_radios}, got {base_port}")
        self.medium = medium or SharedMedium(seed=seed, realtime=realtime, **medium_kwargs)
        self.medium_name = medium_name
        self.radios = [
            VirtualPluto(
                self.medium,
                f"pluto{k}",
                variant=variant,
                host=host,
                port=base_port + k if base_port else 0,
                firmware=firmware,
            )
            for k in range(n_radios)
        ]

    def pulse(self, delay_s: float = 0.0) -> float:
        """Pulse the sync line shared by the lab's radios on demand (TDD engines with
        ``sync_external`` start their armed buffers on it); returns its medium time."""
        return self.medium.pulse(delay_s)

    @property
    def uris(self) -> list[str]:
        return [radio.uri for radio in self.radios]

    def start(self) -> VirtualPlutoLab:
        started: list[VirtualPluto] = []
        try:
            for radio in self.radios:
                started.append(radio.start())
        except OSError:
            for radio in started:
                radio.stop()
            raise
        if self.medium_name:
            register_medium(self.medium_name, self.medium)
        return self

    def stop(self) -> None:
        for radio in self.radios:
            radio.stop()
        if self.medium_name:
            unregister_medium(self.medium_name)

    def __enter__(self) -> VirtualPlutoLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``airmix virtual-pluto``."""
    parser.add_argument("--radios", type=int, default=1, help="number of virtual Plutos")
    parser.add_argument("--seed", type=int, default=0, help="medium seed")
    parser.add_argument("--realtime", action="store_true", help="wall-clock medium")
    parser.add_argument(
        "--base-port", type=int, default=30431, help="TCP port of the first radio (0: free ports)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--variant",
        choices=("ad9363", "ad9364"),
        default="ad9363",
        help="ad9363: stock firmware ranges; ad9364: 70 MHz-6 GHz mod",
    )
    parser.add_argument("--channel", default="rayleigh", help="medium channel model")
    parser.add_argument(
        "--snr-db",
        type=float,
        default=20.0,
        help="link budget as in a simulated run (phy.link_budget): every link at the "
        "run's path loss, the receiver noise for this full-power SNR (default 20, the "
        "default experiment's)",
    )
    parser.add_argument(
        "--firmware", default="v0.39", help="fw_version (v0.39+ has the TDD engine)"
    )
    parser.add_argument(
        "--sync-period-s",
        type=float,
        default=None,
        help="the radios' shared TDD sync line pulses with this period (like a 1 PPS: 1.0)",
    )
    parser.add_argument(
        "--cable-loopback-db",
        type=float,
        default=None,
        help="cable each radio's TX port to its own RX port with this loss, dB (the set-up "
        "pyadi-iio's loopback tests assume); default: no cable",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="stop after this many seconds (0: run until Ctrl-C)",
    )


def main(args: argparse.Namespace) -> int:
    """Start the radios, print their URIs, serve until Ctrl-C (or --duration)."""
    if args.radios < 1:
        print("--radios must be >= 1")
        return 2
    lab = VirtualPlutoLab(
        args.radios,
        seed=args.seed,
        realtime=args.realtime,
        base_port=args.base_port,
        host=args.host,
        variant=args.variant,
        channel_model=args.channel,
        noise_dbfs=noise_dbfs_for(args.snr_db),
        default_path_loss_db=PATH_LOSS_DB,
        firmware=args.firmware,
        sync_period_s=args.sync_period_s,
    )
    try:
        lab.start()
    except OSError as exc:
        print(f"cannot listen: {exc}")
        return 1
    if args.cable_loopback_db is not None:
        for radio in lab.radios:  # a self-link: the radio hears its own TX
            lab.medium.set_link(radio.name, radio.name, path_loss_db=args.cable_loopback_db)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        for radio in lab.radios:
            print(f"{radio.name} {radio.uri} serial={radio.model.serial}", flush=True)
        deadline = time.monotonic() + args.duration if args.duration > 0 else math.inf
        while not stop.is_set() and time.monotonic() < deadline:
            stop.wait(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        lab.stop()
        print("virtual Plutos stopped", flush=True)
    return 0
