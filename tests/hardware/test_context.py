"""The virtual Pluto's IIO context against a real Pluto's: devices, sysfs filenames,
attributes reached by filename (gr-iio's way) and by name (iio_attr), out-of-range and
read-only writes refused with the kernel's errno and no state change."""

from __future__ import annotations

import copy
import csv
import ctypes
import errno
from pathlib import Path

import iio
import pytest

from hardware.ad9361_model import AD9361Model
from tests.hardware.conftest import run_tool
from tests.hardware.pluto_filenames import REAL_PLUTO_FILENAMES


def _entries(dev: iio.Device) -> set[str]:
    return {
        f"{chan.id}/{'o' if chan.output else 'i'}/{name}={attr.filename}"
        for chan in dev.channels
        for name, attr in chan.attrs.items()
    }


def test_devices_and_ids_are_a_stock_plutos(model_server):
    _, server = model_server
    ctx = iio.Context(server.uri)
    assert [(d.id, d.name) for d in ctx.devices] == [
        ("iio:device0", "ad9361-phy"),
        ("iio:device1", "xadc"),
        ("iio:device2", "cf-ad9361-dds-core-lpc"),
        ("iio:device3", "cf-ad9361-lpc"),
    ]
    lpc = ctx.find_device("cf-ad9361-lpc")
    assert sorted(lpc.buffer_attrs) == ["data_available", "length_align_bytes", "watermark"]
    assert "direct_reg_access" in lpc.debug_attrs
    phy = ctx.find_device("ad9361-phy")
    for name in ("dcxo_tune_coarse", "multichip_sync", "gain_table_config", "xo_correction"):
        assert name in phy.attrs
    for name in ("loopback", "bist_prbs", "adi,rx-rf-port-input-select", "direct_reg_access"):
        assert name in phy.debug_attrs


def test_every_channel_attribute_carries_the_kernels_filename(model_server):
    """Compared, as libiio parses the served XML, with a real Pluto's context."""
    _, server = model_server
    ctx = iio.Context(server.uri)
    for name, expected in REAL_PLUTO_FILENAMES.items():
        assert _entries(ctx.find_device(name)) == expected, name


_LIB = iio._lib
_LIB.iio_device_identify_filename.argtypes = [
    ctypes.c_void_p,
    ctypes.c_char_p,
    ctypes.POINTER(ctypes.c_void_p),
    ctypes.POINTER(ctypes.c_char_p),
]
_LIB.iio_channel_attr_read.argtypes = [
    ctypes.c_void_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_size_t,
]
_LIB.iio_channel_attr_read.restype = ctypes.c_ssize_t
_LIB.iio_channel_attr_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
_LIB.iio_channel_attr_write.restype = ctypes.c_ssize_t


def _by_filename(dev: iio.Device, filename: str) -> tuple[ctypes.c_void_p, bytes]:
    """libiio's iio_device_identify_filename: what gr-iio does with "name=value"."""
    chn = ctypes.c_void_p()
    attr = ctypes.c_char_p()
    ret = _LIB.iio_device_identify_filename(
        dev._device, filename.encode(), ctypes.byref(chn), ctypes.byref(attr)
    )
    assert ret == 0, f"{filename}: {ret}"
    assert chn.value is not None and attr.value is not None
    return chn, attr.value


def _read_by_filename(dev: iio.Device, filename: str) -> str | int:
    chn, attr = _by_filename(dev, filename)
    buf = ctypes.create_string_buffer(4096)
    try:
        _LIB.iio_channel_attr_read(chn, attr, buf, len(buf))
    except OSError as exc:  # pylibiio's errcheck turns a negative return into OSError
        return -exc.errno
    return buf.value.decode()


def _write_by_filename(dev: iio.Device, filename: str, value: str) -> int:
    chn, attr = _by_filename(dev, filename)
    try:
        return _LIB.iio_channel_attr_write(chn, attr, value.encode())
    except OSError as exc:
        return -exc.errno


def _attributes(model: AD9361Model):
    """(device, channel, attribute) for every channel attribute of the model."""
    for dev in model.context.devices:
        for chan in dev.channels:
            for attribute in chan.attrs:
                yield dev, chan, attribute


def test_every_channel_attribute_is_read_and_rewritten_by_its_filename(model_server):
    """Read each by filename; write each writable one back with the value it read."""
    model, server = model_server
    ctx = iio.Context(server.uri)
    model.set_choice("gain_mode", ("manual",), "manual")  # hardwaregain is writable then
    readable = writable = 0
    for dev, _chan, attribute in _attributes(model):
        net = ctx.find_device(dev.name)
        try:
            expected = attribute.get()
        except Exception as exc:  # attributes that fail on a Pluto fail the same here
            assert _read_by_filename(net, attribute.filename) == -exc.errno  # type: ignore[attr-defined]
            continue
        assert _read_by_filename(net, attribute.filename) == expected, attribute.filename
        readable += 1
        if attribute.write is None or attribute.name.startswith("fastlock"):
            continue  # fastlock_* are commands, not values
        ret = _write_by_filename(net, attribute.filename, expected.split(" dB")[0])
        assert ret > 0, f"{attribute.filename} <- {expected!r}: {ret}"
        assert _read_by_filename(net, attribute.filename) == expected, attribute.filename
        writable += 1
    assert readable > 120 and writable > 60


def test_gr_iio_style_writes_tune_the_radio(model_server):
    model, server = model_server
    ctx = iio.Context(server.uri)
    phy = ctx.find_device("ad9361-phy")
    assert _write_by_filename(phy, "out_altvoltage0_RX_LO_frequency", "915000000") > 0
    assert _write_by_filename(phy, "in_voltage0_gain_control_mode", "manual") > 0
    assert _write_by_filename(phy, "in_voltage0_hardwaregain", "32.000000") > 0
    assert _write_by_filename(phy, "in_voltage_quadrature_tracking_en", "0") > 0
    assert _write_by_filename(phy, "in_voltage_sampling_frequency", "600000.0") < 0  # no FIR
    assert _write_by_filename(phy, "in_voltage_sampling_frequency", "3000000.0") > 0
    s = model.state
    assert (s.rx_lo_hz, s.gain_mode, s.rx_gain_db, s.quad_tracking) == (
        915_000_000,
        "manual",
        32,
        False,
    )
    assert s.sample_rate_hz == 3_000_000


def test_iio_attr_reads_and_writes_channel_attributes(model_server):
    model, server = model_server
    uri = server.uri
    model.set_choice("gain_mode", ("manual",), "manual")
    written_count = 0
    for dev, chan, attribute in _attributes(model):
        if attribute.write is None or attribute.name.startswith("fastlock"):
            continue
        try:
            value = attribute.get()
        except Exception:
            continue
        direction = "-o" if chan.output else "-i"
        args = ["iio_attr", "-u", uri, direction, "-c", dev.name, chan.id, attribute.name]
        read = run_tool(*args)
        assert read.returncode == 0, read.stderr
        assert read.stdout.decode().strip() == value
        written = run_tool(*args, value.split(" dB")[0])
        assert written.returncode == 0, (args, written.stderr)
        assert attribute.get() == value
        written_count += 1
    assert written_count > 60


#: A value each writable attribute refuses, with the driver's errno, from
#: ``bad_writes.csv`` (columns device, kind, attribute, value, errno name, why). The kind
#: is a channel type, or ``device`` / ``debug`` / ``buffer`` for those attributes.
_ADI_DT = ("x", errno.EINVAL)
BAD_WRITES: dict[tuple[str, str, str], tuple[str, int]] = {
    (row["device"], row["kind"], row["attribute"]): (row["value"], getattr(errno, row["errno"]))
    for row in csv.DictReader((Path(__file__).parent / "bad_writes.csv").read_text().splitlines())
}


def _writable(model: AD9361Model):
    """(device name, kind or channel type, attribute, libiio accessor) of every writable
    attribute; the accessor maps a pylibiio Device to the attribute object."""
    for dev in model.context.devices:
        for chan in dev.channels:
            for attribute in chan.attrs:
                if attribute.write is not None:
                    yield (
                        dev.name,
                        chan.type,
                        attribute.name,
                        lambda d, c=chan, a=attribute.name: d.find_channel(c.id, c.output).attrs[a],
                    )
        for kind, attrs, getter in (
            ("device", dev.attrs, lambda d, a: d.attrs[a]),
            ("debug", dev.debug_attrs, lambda d, a: d.debug_attrs[a]),
            ("buffer", dev.buffer_attrs, lambda d, a: d.buffer_attrs[a]),
        ):
            for attribute in attrs:
                if attribute.write is not None:
                    yield (
                        dev.name,
                        kind,
                        attribute.name,
                        lambda d, g=getter, a=attribute.name: g(d, a),
                    )


def _bad_write(device: str, kind: str, name: str) -> tuple[str, int]:
    if kind == "debug" and name.startswith("adi,"):
        return _ADI_DT
    key = (device, kind, name)
    assert key in BAD_WRITES, f"no out-of-range case for {key}: add one"
    return BAD_WRITES[key]


def _snapshot(model: AD9361Model) -> tuple:
    return (
        copy.deepcopy(model.state),
        dict(model.misc),
        dict(model.debug_values),
        dict(model.watermark),
        model.xadc_rate_hz,
        [(t.increment, t.phase_reg, t.scale_reg) for t in model.dds.tones],
        model.dds.enabled,
        bytes(model.spi.values),
    )


def test_out_of_range_writes_are_refused_with_the_drivers_errno(model_server):
    model, server = model_server
    ctx = iio.Context(server.uri)
    checked = 0
    for device, kind, name, access in _writable(model):
        value, err = _bad_write(device, kind, name)
        attr = access(ctx.find_device(device))
        before = _snapshot(model)
        with pytest.raises(OSError) as info:
            attr.value = value
        assert info.value.errno == err, (device, kind, name, value)
        assert _snapshot(model) == before, (device, kind, name)
        checked += 1
    assert checked > 250  # every writable attribute, debug files included


def test_read_only_attributes_refuse_writes(model_server):
    model, server = model_server
    ctx = iio.Context(server.uri)
    for dev in model.context.devices:
        net = ctx.find_device(dev.name)
        read_only = [(chan, attribute) for chan in dev.channels for attribute in chan.attrs] + [
            (None, attribute) for attribute in dev.attrs
        ]
        for chan, attribute in read_only:
            if attribute.write is not None:
                continue
            target = (
                net.find_channel(chan.id, chan.output).attrs[attribute.name]
                if chan is not None
                else net.attrs[attribute.name]
            )
            before = _snapshot(model)
            with pytest.raises(OSError) as info:
                target.value = "1"
            assert info.value.errno == errno.EACCES, (dev.name, attribute.name)
            assert _snapshot(model) == before


def test_kernel_number_parsing(model_server):
    """info_mask attributes take fixed point ("600000.0"); the LO takes kstrtoull only."""
    model, server = model_server
    ctx = iio.Context(server.uri)
    phy = ctx.find_device("ad9361-phy")
    rx = phy.find_channel("voltage0", False)
    rx.attrs["sampling_frequency"].value = "3000000.0"
    assert model.state.sample_rate_hz == 3_000_000
    lo = phy.find_channel("altvoltage0", True)
    for bad in ("2.4e9", "2400000000.0", "-2400000000", " 2400000000x"):
        with pytest.raises(OSError) as info:
            lo.attrs["frequency"].value = bad
        assert info.value.errno == errno.EINVAL
    lo.attrs["frequency"].value = "+2400000000"
    assert model.state.rx_lo_hz == 2_400_000_000
    tx = phy.find_channel("voltage0", True)
    tx.attrs["hardwaregain"].value = "-20.3 dB"  # the dB suffix is accepted
    assert model.state.tx_atten_mdb == 20_250
    rx.attrs["quadrature_tracking_en"].value = "off"  # kstrtobool
    assert model.state.quad_tracking is False


def test_direct_reg_access_status_flags(model_server):
    """pyadi-iio's reg_read/reg_write on the cores' status register (0x80000088)."""
    model, server = model_server
    ctx = iio.Context(server.uri)
    adc = ctx.find_device("cf-ad9361-lpc")
    dac = ctx.find_device("cf-ad9361-dds-core-lpc")
    assert adc.reg_read(0x80000088) & 4 == 0
    model.raise_overflow()
    model.raise_underflow()
    assert adc.reg_read(0x80000088) & 4 and dac.reg_read(0x80000088) & 1
    assert model.overflow and model.underflow
    adc.reg_write(0x80000088, 0x2)  # writing other bits leaves the overflow latched
    assert adc.reg_read(0x80000088) & 4
    adc.reg_write(0x80000088, 0x4)  # write 1 to clear
    dac.reg_write(0x80000088, 0x1)
    assert adc.reg_read(0x80000088) == 0 and dac.reg_read(0x80000088) == 0
    assert not model.overflow and not model.underflow
    assert dac.reg_read(0x80000000) == 0x00090162  # the DDS core's version register
    phy = ctx.find_device("ad9361-phy")
    assert phy.reg_read(0x37) == 0x0A  # the AD9361's product id over SPI
    phy.reg_write(0x3F5, 0x01)
    assert phy.reg_read(0x3F5) == 0x01
    assert adc.reg_read(0x3F5) == 0x01  # the ADC core forwards other addresses to SPI


@pytest.mark.parametrize("variant", ["ad9363", "ad9364"])
def test_variant_switch_sets_the_lo_and_bandwidth_ranges(variant):
    model = AD9361Model(variant)
    phy = model.context.find_device("ad9361-phy")
    assert phy is not None
    lo = phy.find_channel("RX_LO", True)
    assert lo is not None
    low, high = (325_000_000, 3_800_000_000) if variant == "ad9363" else (70e6, 6e9)
    assert lo.attr("frequency_available").get() == f"[{int(low)} 1 {int(high)}]"
    lo.attr("frequency").set(str(int(high)))
    with pytest.raises(Exception) as info:
        lo.attr("frequency").set(str(int(high) + 1))
    assert info.value.errno == errno.EINVAL  # type: ignore[attr-defined]
    assert model.context.attrs["ad9361-phy,model"] == (
        "ad9363a" if variant == "ad9363" else "ad9364"
    )
