"""NetSimRadio <-> RadioService over real ZeroMQ sockets, with the client in a real process."""

import multiprocessing

import numpy as np
import pytest

from phy.medium import SharedMedium, register_medium
from radio import RadioConfig, RadioConfigError, RadioTimeout, TransmitClippingError, open_radio
from radio.sim_net import NetSimRadio, RadioService


def _tone(n: int = 4096, cycles: int = 40) -> np.ndarray:
    return (0.5 * np.exp(2j * np.pi * cycles * np.arange(n) / n)).astype(np.complex64)


def _user_process(uri: str, queue) -> None:
    """A node process: open the radio by URI and start a cyclic tone."""
    radio = open_radio(uri)
    radio.configure(RadioConfig(tx_attenuation_db=0.0))
    radio.transmit(_tone(), cyclic=True)
    queue.put(type(radio).__name__)


@pytest.fixture
def service():
    medium = SharedMedium(rng=3)
    register_medium("simnet-test", medium)
    with RadioService(lambda name: open_radio(f"sim://simnet-test/{name}")) as served:
        yield medium, served


def test_remote_user_transmission_reaches_local_receiver(service):
    medium, served = service
    receiver = open_radio("sim://simnet-test/rx")
    noise_only = receiver.receive(8192)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_user_process, args=(served.uri("user0"), queue))
    process.start()
    process.join(timeout=60)
    assert process.exitcode == 0 and queue.get(timeout=5) == "NetSimRadio"
    medium.set_link("user0", "rx", gain=1.0, path_loss_db=0.0)
    with_signal = receiver.receive(8192)
    assert np.mean(np.abs(with_signal) ** 2) > 100 * np.mean(np.abs(noise_only) ** 2)
    spectrum = np.abs(np.fft.fft(with_signal[:4096]))
    assert abs(int(np.argmax(spectrum)) - 40) <= 2  # the tone, shifted by the CFO only


def test_errors_travel_back_with_their_type(service):
    _, served = service
    radio = NetSimRadio(served.uri("user1"))
    with pytest.raises(TransmitClippingError):
        radio.transmit(np.full(16, 2.0, dtype=np.complex64))
    with pytest.raises(RadioConfigError):
        radio.configure(RadioConfig(center_hz=10e9))
    radio.configure(RadioConfig(rx_gain_db=12.0))
    assert radio.config.rx_gain_db == 12.0
    radio.close()
    radio.close()  # closing twice is fine


def test_bad_uri_and_dead_service():
    with pytest.raises(RadioConfigError, match="simnet://HOST:PORT/RADIO"):
        NetSimRadio("simnet://127.0.0.1:5555")
    medium = SharedMedium(rng=1)
    register_medium("simnet-dead", medium)
    served = RadioService(lambda name: open_radio(f"sim://simnet-dead/{name}"))
    radio = NetSimRadio(served.uri("u"), timeout_s=0.3)
    served.close()
    with pytest.raises(RadioTimeout):
        radio.stop_transmit()


def test_reset_moves_served_radios_to_a_new_medium():
    first, second = SharedMedium(rng=5), SharedMedium(rng=6)
    register_medium("simnet-swap", first)
    with RadioService(lambda name: open_radio(f"sim://simnet-swap/{name}")) as served:
        client = NetSimRadio(served.uri("u"))
        client.stop_transmit()
        assert "u" in first.radios
        register_medium("simnet-swap", second)
        served.reset()
        client.stop_transmit()  # same client, same URI: now on the second medium
        assert "u" in second.radios and served.open("u") is served.open("u")


def test_radios_of_one_process_share_one_socket_beyond_the_context_limit():
    """More radios than a ZeroMQ context has sockets (1,023 by default) in one process:
    they share one REQ socket to the service, every call still reaches its own radio,
    and the socket closes with the last radio."""
    medium = SharedMedium(rng=2)
    register_medium("simnet-many", medium)
    with RadioService(lambda name: open_radio(f"sim://simnet-many/{name}")) as served:
        radios = [NetSimRadio(served.uri(f"u{i}")) for i in range(1100)]
        for i, radio in enumerate(radios):
            radio.configure(RadioConfig(rx_gain_db=float(i % 50)))
        assert [r.config.rx_gain_db for r in radios[::100]] == [
            float(i % 50) for i in range(0, 1100, 100)
        ]
        assert len(medium.radios) >= 1100
        (requester,) = {id(r._requester) for r in radios}
        assert requester == id(radios[0]._requester) and radios[0]._requester.users == 1100
        shared = radios[0]._requester
        for radio in radios:
            radio.close()
        assert shared.users == 0 and shared._socket is None
