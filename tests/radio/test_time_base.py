"""radio.time_base on the simulated medium with realistic (jittered) buffer timing:
both time bases end to end, underflow and overflow injected and recovered, one copy of
each payload on the air per slot, and bad combinations refused with a clear cause."""

import math

import numpy as np
import pytest

from phy.eavesdropper import eavesdrop_frame, receiver_window
from phy.medium import SharedMedium
from phy.sync import detect_frames
from phy.waveform import OfdmConfig, frame_length
from radio.base import RadioConfig, TimeBaseUnsupported
from radio.sim import SimRadio
from radio.time_base import GainTrack, TimeBaseReceiver, TimeBaseSession, stream_truth

OFDM = OfdmConfig()
K = 8
N_REALS = 192


def _bed(time_base="stream", seed=100, snr_db=20.0, **kw):
    noise = 10 * math.log10(OFDM.amplitude**2) - 10.0 - snr_db
    period = 0.02 if time_base == "tdd" else None
    medium = SharedMedium(
        seed=seed,
        noise_dbfs=noise,
        default_path_loss_db=10.0,
        sync_period_s=period,
        channel_model="rayleigh",
        **kw,
    )
    rf = RadioConfig(915e6, 1e6, tx_attenuation_db=0.0, rx_gain_db=0.0, rx_buffer_size=4096)
    names = ["rx"] + [f"u{k}" for k in range(K)]
    radios = [SimRadio(f"sim://tb/{n}", medium=medium) for n in names]
    for r in radios:
        r.configure(rf)
    return medium, truth_session(medium, radios, names, time_base, period)


def truth_session(medium, radios, names, time_base, period):
    """A :class:`TimeBaseSession` of receiver ``radios[0]`` and users ``radios[1:]``
    (named ``names`` on ``medium``) at 915 MHz that knows the medium's truth (genie)."""
    truth, gain = stream_truth(medium, names[1:], names[0], OFDM, time_base)
    return TimeBaseSession(
        radios[0],
        radios[1:],
        OFDM,
        time_base=time_base,
        carrier_hz=915e6,
        sync_period_s=period,
        truth=truth,
        true_gain=gain,
    )


def _slot(session, seed=0, genie=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((K, N_REALS))
    return session.mixup(x, np.full(K, 1.0 / K), genie=genie)


def test_stream_time_base_end_to_end_under_ms_jitter():
    medium, session = _bed()
    assert medium.start_jitter_s == pytest.approx(1e-3)
    measured = [_slot(session, s).mse_vs_target for s in range(2)]
    genie = [_slot(session, s, genie=True).mse_vs_target for s in range(2)]
    assert 10 * math.log10(np.mean(measured) / np.mean(genie)) < 3.0
    assert max(session.air.timing_errors) < 0.1  # samples, despite ms start jitter
    assert session.air.acquisition == 2 * K * session.rx.burst_len and session.air.payload > 0


def test_stream_time_base_holds_within_a_db_of_genie_at_30_db():
    # at high SNR a per-user gain bias shows: the probe's FFT window must stay clear of
    # its band-limited ring-down, and the users' CFO pre-rotations must keep the band-edge
    # subcarriers inside the transmit interpolation's passband (receiver-side shift)
    _, session = _bed(seed=101, snr_db=30.0)
    rng = np.random.default_rng(5)
    w = np.full(K, 1.0 / K)
    session.mixup(rng.standard_normal((K, 960)), w)  # acquisition slot
    outs = [session.mixup(rng.standard_normal((K, 960)), w) for _ in range(4)]
    ratio = np.mean([o.mse_vs_target for o in outs]) / np.mean([o.closed_form_mse for o in outs])
    assert 10 * math.log10(ratio) < 1.0
    cfos = [session.rx.truth(k).cfo_hz for k in range(K)]
    plan = session.rx.plan(range(K), w, 960)
    spread = max(cfos) - min(cfos)
    assert spread > 5e3  # the draw has CFOs to spread
    assert max(abs(o.cfo_hz) for o in plan.orders) < spread / 2 + 1.0
    assert plan.shift_hz == pytest.approx((max(cfos) + min(cfos)) / 2, abs=1.0)


def test_tdd_time_base_end_to_end_with_a_gpsdo_reference():
    # a GPS-disciplined shared reference (no oscillator error) with the sync pulse
    # derived from it: every radio catches each pulse on the same sample
    _, session = _bed("tdd", shared_reference=True, ppm_range=0.0)
    measured = [_slot(session, s) for s in range(3)]
    ratio = np.mean([m.mse_vs_target for m in measured]) / np.mean(
        [m.closed_form_mse for m in measured]
    )
    assert 10 * math.log10(ratio) < 2.0
    assert session.air.probe > 0


def test_tdd_on_free_running_clocks_tracks_each_users_start_per_pulse():
    # each radio starts on its own sample-clock edge after the pulse: the users' buffer
    # starts move by up to a sample from pulse to pulse (whole-sample wraps included),
    # which the lag-walk model (phy.tdd_timing) predicts so the mixup holds
    _, session = _bed("tdd", seed=102, snr_db=30.0)
    rng = np.random.default_rng(5)
    w = np.full(K, 1.0 / K)
    outs = [session.mixup(rng.standard_normal((K, 960)), w) for _ in range(4)]
    raw = [np.array([d for _, d in session.rx.clocks.obs[k]]) for k in range(K)]
    assert max(np.ptp(np.diff(r)) for r in raw) > 0.5  # the per-pulse jumps are there
    ratio = np.mean([o.mse_vs_target for o in outs]) / np.mean([o.closed_form_mse for o in outs])
    assert 10 * math.log10(ratio) < 2.0  # (34 dB with the acquisition offset kept)


def test_underflow_injected_is_detected_and_only_that_user_reacquired():
    medium, session = _bed()
    _slot(session)
    acquired = session.air.acquisition
    assert medium.port("u1").stall_feeder(0.03) > 0
    session.skip(60000)  # the receiver reads on; u1's queue runs dry
    out = _slot(session, 1)
    assert session.air.underflows == 1 and session.air.reacquisitions == 1
    assert session.air.acquisition == acquired + 2 * session.rx.burst_len  # u1 only
    genie = _slot(session, 1, genie=True)
    assert out.mse_vs_target < 2.0 * genie.mse_vs_target


def test_lost_tracking_found_by_the_probe_reacquires_that_user():
    medium, session = _bed()
    _slot(session)
    medium.port("u2").stall_feeder(0.03)  # the next probe lands ms late, flag not yet up
    out = _slot(session, 1)
    assert session.air.lost_tracking == 1 and session.air.reacquisitions == 1
    assert np.mean((out.estimate - out.target) ** 2) < 0.1 * np.mean(out.target**2)


def test_a_user_silenced_by_a_deep_fade_is_heard_again_when_the_fading_changes():
    """Its stream runs on while it is silent: the next acquisition places the pair by its
    last timing track (a fresh-stream placement would be long past and dropped)."""
    medium, session = _bed()
    _slot(session)
    medium.port("u3").tx_attenuation_db = 80.0  # a deep fade for one round
    session.rx.new_round()
    _slot(session, 1)
    assert 3 not in session.rx.tracks and session.rx.silent == {3}
    medium.port("u3").tx_attenuation_db = 0.0  # the fading changes
    session.rx.new_round()
    out = _slot(session, 2)
    assert 3 in session.rx.tracks and not session.rx.silent and not session.rx.parked
    genie = _slot(session, 2, genie=True)
    assert out.mse_vs_target < 2.0 * genie.mse_vs_target


def test_overflow_injected_reacquires_everyone():
    medium, session = _bed()
    _slot(session)
    acquired = session.air.acquisition
    medium.advance(0.2)  # the receiver falls behind its kernel buffers
    out = _slot(session, 1)
    assert session.air.overflows == 1
    assert session.air.acquisition == acquired + 2 * K * session.rx.burst_len
    assert np.mean((out.estimate - out.target) ** 2) < 0.1 * np.mean(out.target**2)


@pytest.mark.parametrize("time_base", ["stream", "tdd"])
def test_each_payload_is_on_the_air_once_per_slot(time_base):
    medium, session = _bed(time_base)
    _slot(session)
    _slot(session, 1)
    rx = medium.port("rx")
    first = min(tr.start_s for k in range(K) for tr in medium.port(f"u{k}")._history)
    n = int((medium.now_s - first + 0.01) * 1e6)
    air = rx.capture(first - 0.01, n)  # all the air of the session, as the receiver hears it
    # acquisition bursts carry the users' roots and probes no preamble: every payload
    # preamble detected is a frame on the air; two slots, two frames (nothing repeats)
    assert len(detect_frames(air, OFDM)) == 2


@pytest.mark.parametrize("time_base", ["stream", "tdd"])
def test_eavesdropper_window_covers_the_slots_frame(time_base):
    # a passive eavesdropper listens over the air of the receiver's last slot window
    # (stream read or capture armed on the TDD engine): the frame sits where the
    # receiver's does, MARGIN samples in
    medium, session = _bed(time_base)
    eve = medium.add_radio("eve", passive=True, lo_hz=915e6, sample_rate_hz=1e6)
    for k in range(K):
        medium.set_link(f"u{k}", "eve", path_loss_db=10.0)
    _slot(session)
    n = frame_length(N_REALS, OFDM) + 128  # the plan's buffer_len: frame and margins
    start = receiver_window(medium.port("rx"), n, 4096)
    heard = eavesdrop_frame(eve.capture(start, n), N_REALS, OFDM)
    assert abs(heard.start - 64) < 1.5 and heard.correlation > 0.5


def test_bad_combinations_fail_naming_the_cause():
    medium = SharedMedium(seed=0)
    old = SimRadio("sim://x/old", medium=medium, tdd_engine=False)
    new = SimRadio("sim://x/new", medium=medium)
    with pytest.raises(TimeBaseUnsupported, match="v0.39"):
        TimeBaseSession(new, [old], time_base="tdd", sync_period_s=0.02)
    fast = RadioConfig(915e6, 10e6, tx_attenuation_db=0.0, rx_gain_db=0.0)
    new.configure(fast)
    with pytest.raises(TimeBaseUnsupported, match="cannot be fed"):
        TimeBaseSession(new, [old], time_base="stream")
    with pytest.raises(ValueError, match="sync_period_s"):
        TimeBaseSession(new, [new], time_base="tdd")


def _saved(state):
    """``state`` through a checkpoint file as the run writes and reads it."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_checkpointed_receiver_continues_as_the_uninterrupted_one():
    # two identical beds: one receiver runs on, the other is rebuilt from its
    # checkpoint between rounds (radios streaming on): the next slots are identical
    _, a = _bed(seed=3)
    _, b = _bed(seed=3)
    for s in range(2):
        _slot(a, s), _slot(b, s)
    a.rx.new_round()  # a checkpoint is taken between rounds
    state = _saved(b.rx.state_dict())
    old = b.rx
    b.rx = TimeBaseReceiver(
        old.radio,
        OFDM,
        time_base="stream",
        send=old.send,
        carrier_hz=915e6,
        underflowed=old.underflowed,
        user_lead=old.user_lead,
        state=state,
        streams_restarted=False,
    )
    for s in range(2, 4):
        assert np.array_equal(_slot(a, s).estimate, _slot(b, s).estimate)
    assert b.rx.air.acquisition == a.rx.air.acquisition  # nobody re-acquired


def test_resumed_receiver_reacquires_each_user_once_and_counts_on():
    # a resumed run: new processes, so new streams; the checkpoint's counters and air
    # totals continue, every tracked user is re-acquired once and counted so
    _, a = _bed(seed=4)
    _slot(a)
    state = _saved(a.rx.state_dict())
    medium, b = _bed(seed=4)  # the radios start anew
    b.rx.load_state_dict(state)
    out = _slot(b, 1)
    assert b.rx.air.reacquisitions == K
    assert all(b.rx.user_counters(k)["reacquisitions"] == 1 for k in range(K))
    assert b.rx.air.acquisition == 2 * a.rx.air.acquisition
    assert np.mean((out.estimate - out.target) ** 2) < 0.1 * np.mean(out.target**2)
    with pytest.raises(ValueError, match="time base"):
        b.rx.load_state_dict({**state, "time_base": "tdd"})


@pytest.mark.parametrize(
    "cfo_error_hz, outlier, gap",
    [(-3.7, 0.15, 0), (8.6, None, 72_000)],
    ids=["outlier-probe-restarts-the-line", "one-probe-far-after-the-pair"],
)
def test_a_low_snr_reacquisitions_cfo_is_refined_by_close_probes_before_long_gaps(
    cfo_error_hz, outlier, gap
):
    """Default run: users re-acquired in deep fades got the acquisition's CFO off by a
    few Hz (u006, round 28, -1.4 dB: 3.7 Hz; u003, round 42, 3.8 dB: 8.6 Hz). Their
    phase lines were unwrapped from it across gaps where that error is more than half a
    cycle: the first probe 77k samples after the pair (u003), or, the re-probe being a
    magnitude outlier whose jump restarted the line, the next slot's probe a group period
    (180,768 samples) later (u006). The CFO slipped a cycle (13 Hz, 5.5 Hz) and stayed
    wrong for the rest of the run (probes that far apart never refine a settled CFO):
    a constant 1.3 rad error on every payload of the user's group."""
    _, session = _bed()
    rx = session.rx
    fs = OFDM.sample_rate_hz
    _slot(session)
    rx.new_round()
    rx.acquire([3])  # the low-SNR re-acquisition: its CFO off by a few Hz
    rx.tracks[3].cfo_hz += cfo_error_hz
    rx.gain_tracks[3].nu = rx.tracks[3].cfo_hz / fs
    session.skip(gap)
    probe, outliers = rx.probe, [outlier] if outlier else []

    def probe_with_an_outlier(uids):  # u3's next probe: a magnitude outlier
        gains, delays, at = probe(uids)
        if outliers and 3 in uids:
            gains[list(uids).index(3)] *= outliers.pop()
        return gains, delays, at

    rx.probe = probe_with_an_outlier
    outs = []
    for s in range(4):  # slots a group period apart (the default run's 180,768 samples)
        outs.append(_slot(session, 1 + s))
        session.skip(180_768 - 2 * 2368)
    assert not outliers
    assert abs(rx.tracks[3].cfo_hz - rx.truth(3).cfo_hz) < 1.0  # Hz (5.5 / 13 before)
    late = outs[1:]
    ratio = np.mean([o.mse_vs_target for o in late]) / np.mean([o.closed_form_mse for o in late])
    assert 10 * math.log10(ratio) < 3.0


def test_a_low_snr_reacquisitions_timing_error_is_taken_out_by_the_probes():
    """Default run, round 51: u000 re-acquired at 0.1 dB SNR got its stream offset 0.46
    samples off; every later probe measured that residual delay (-0.46 +- 0.02) but the
    stream track never used it: a phase ramp across the band on every payload of its
    group (measured 5-12 dB above prediction to the end). The probes' residual delays
    now move the offset by their share of the weight (observations x SNR) behind it."""
    medium, session = _bed()
    rx = session.rx
    _slot(session)
    rx.new_round()
    medium.port("u3").tx_attenuation_db = 20.0  # a deep fade at the re-acquisition
    rx.acquire([3])  # at about 0 dB: its offset half a sample off
    rx.tracks[3].offset += 0.46
    medium.port("u3").tx_attenuation_db = 0.0  # the fading changes
    rx.new_round()
    outs = [_slot(session, 1 + s) for s in range(6)]
    assert abs(rx.tracks[3].offset - rx.truth(3).offset) < 0.05  # samples (0.46 before)
    late = outs[3:]
    ratio = np.mean([o.mse_vs_target for o in late]) / np.mean([o.closed_form_mse for o in late])
    assert 10 * math.log10(ratio) < 3.0


def _payload_landing_errors(medium, session, names):
    """Per user of the last tdd payload: where its buffer index 0 really landed in the
    receiver's capture (the medium's truth) minus where the receiver predicted it."""
    rx = medium.port(names[0])
    capture_start, fs = rx.tdd_capture[0], rx.actual_sample_rate_hz
    errors = []
    for k, name in enumerate(names[1:]):
        start = medium.port(name)._history[-1].start_s
        true = (start + medium.link_truth(name, names[0]).delay_s - capture_start) * fs
        errors.append(true - session.rx._tdd_delays[k])
    return np.array(errors)


def test_tdd_payloads_land_on_the_predicted_sample_across_fading_redraws():
    # free-running clocks, the fading redrawn every 9 slots as a run's rounds do: a
    # payload placed one sample off turns its bins by up to 2 pi 26 / 64 (10-20 dB over
    # genie); probes a slot apart pin the users' lag walks on one pulse parity only, so
    # where no pulse is sure the receiver probes consecutive pulses before the payload
    names = ["rx"] + [f"u{k}" for k in range(K)]
    medium, session = _bed("tdd", seed=100)
    rng = np.random.default_rng(0)
    worst = []
    for slot in range(27):
        session.mixup(rng.standard_normal((K, N_REALS)), np.full(K, 1.0 / K))
        worst.append(float(np.max(np.abs(_payload_landing_errors(medium, session, names)))))
        if slot % 9 == 8:
            medium.redraw_fading()
            session.rx.new_round()
    assert max(worst) < 0.5, np.round(worst, 2)


@pytest.mark.parametrize("alias", [1, 2])
def test_tdd_gain_track_unaliases_a_cfo_seen_on_every_other_pulse(alias):
    # a host that probes every other pulse sees the phase only every 2 periods P, so a
    # CFO off by half a cycle per period (1 / (2 P)) fits as well; a gap of 3 periods
    # tells them apart (before: the line kept the alias, and a payload an odd number of
    # pulses on turned by half a cycle). alias 2: a third of a cycle, gaps of 3
    period = 100_000.0
    nu = 0.004629  # cycles per sample: the true CFO
    # the acquisition's CFO, 0.3 (0.2) of a cycle per period off: unwrapped over gaps of 2
    # (3) periods, the line lands on the alias half (a third of) a cycle per period off
    start = nu + (0.3 if alias == 1 else 0.2) / period
    rng = np.random.default_rng(alias)
    pulses = [0, 2, 4, 6, 8, 10, 13, 15] if alias == 1 else [0, 3, 6, 9, 12, 14, 17, 20]

    def tracked(spacing):
        track = None
        for p in pulses:
            at = p * period + rng.uniform(0, 100)
            raw = 0.4 * np.exp(1j * (0.3 + 2 * np.pi * nu * at + 0.02 * rng.standard_normal()))
            if track is None:
                track = GainTrack(raw, at, start, 26.0, settled=True, settled_gap=1e6,
                                  alias_spacing=spacing)  # fmt: skip
            else:
                track.add(raw, at, 26.0)
        return track.nu

    assert abs(tracked(period) - nu) * period < 0.01  # < 0.01 cycle per period
    assert abs(tracked(0.0) - nu) * period > 0.3  # without: the alias stays


def test_tdd_gain_track_points_move_with_a_refit_of_the_receivers_lags():
    # a probe's raw gain is stamped with its pulse and capture index; its global index
    # holds the receiver's lag on that pulse, which a later refit of the lag walks may
    # move. Before, points kept the lags of the fit at the time (here 0.3 sample off on
    # odd pulses): at a 30 kHz CFO that bent the phase line by 3 degrees, 2-5 dB over
    # genie at 30 dB SNR
    period, nu = 20_000.0, 0.03  # samples per pulse; cycles per sample (30 kHz at 1 MS/s)

    def lag(p, off=0.0):  # the receiver's lag on pulse p (true; or off on odd pulses)
        return (0.37 - 0.29 * p) % 1.0 + off * (p % 2)

    def global_index(stamp, off=0.0):
        pulse, index = stamp
        return index + lag(pulse, off) + pulse * period

    def raw(stamp):
        return 0.4 * np.exp(1j * (0.5 + 2 * np.pi * nu * global_index(stamp)))

    stamps = [(p, 300.0 + 7 * p) for p in range(8)]
    track = None
    for s in stamps:
        at = global_index(s, off=0.3)
        if track is None:
            track = GainTrack(raw(s), at, nu, 26.0, settled=True, settled_gap=1e6, stamp=s)
        else:
            track.add(raw(s), at, 26.0, stamp=s)
    nxt = global_index((9, 300.0))
    before = abs(np.angle(track.predict(nxt) / raw((9, 300.0))))
    track.retime(global_index)
    after = abs(np.angle(track.predict(nxt) / raw((9, 300.0))))
    assert after < 1e-6 < 0.02 < before, (after, before)
