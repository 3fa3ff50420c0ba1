"""BLE core without hardware: a real BLE stack (Bumble, in-memory link) behind bleak's public API.

Emulated wearables stream real USC-HAD data at the real rate; everything the host receives is
checked against the recording itself. Streams are kept short (notifications run in real time).
"""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from bleak import BleakClient, BleakScanner

from streamhar.errors import UsageError
from streamhar.sources.ble.emulators.generic import SCALES, GenericEmulator
from streamhar.sources.ble.emulators.polar import PolarEmulator
from streamhar.sources.ble.errors import DeviceLost, DeviceNotFound, NotificationsRefused, WrongProfile
from streamhar.sources.ble.profiles import generic_format as fmt
from streamhar.sources.ble.source import BleSource
from streamhar.sources.ble.world import BleWorld

G = 9.80665


@pytest.fixture(scope="module")
def rec(data_dir):
    from streamhar.datasets import get_dataset
    return get_dataset("usc-had").load_selection(data_dir, "12")[0]      # 12/a1t1: 134 s at 100 Hz


@pytest.fixture(scope="module")
def world():
    w = BleWorld()
    yield w
    w.close()


_n = iter(range(1, 1000))


def add(world, cls, rec, **kw):
    kw.setdefault("name", f"{cls.profile[:4]}-{next(_n)}")
    return world.add(cls(rec, **kw))


def si(rec, k: np.ndarray, start: int = 0) -> np.ndarray:
    """The recording's samples k (looped) in SI: acc g → m/s^2, gyro dps → rad/s (USC-HAD columns)."""
    x = rec.samples[(start + k) % len(rec)].astype(np.float64)
    return np.concatenate([x[:, :3] * G, x[:, 3:6] * math.pi / 180], axis=1)


def collect(src, seconds: float, until=None) -> list:
    t0 = time.monotonic()
    return list(src.chunks(lambda: time.monotonic() - t0 > seconds or (until is not None and until())))


def stacked(chunks):
    return np.concatenate([c.timestamps for c in chunks]), np.concatenate([c.samples for c in chunks])


def steady(t: np.ndarray) -> np.ndarray:
    """Samples after the first second: the clock estimate's warm-up (a first frame delayed by a busy
    host maps late until the lower envelope of arrivals finds the true offset; docs/WEARABLES.md)."""
    return t - t[0] >= 1.0


def assert_period(t: np.ndarray, period: float) -> None:
    d = np.diff(t)[steady(t)[1:]]
    assert np.median(np.diff(t)) == pytest.approx(period) and np.abs(d - period).max() < 0.3 * period


# ---------------------------------------------------------------------------------- backend


def test_backend_scan_connect_read_write_notify(world, rec):
    emu = add(world, GenericEmulator, rec)

    async def main():
        found = await BleakScanner.discover(timeout=0.3, return_adv=True, **world.scanner_kwargs())
        device, adv = found[emu.address]
        assert adv.local_name == emu.name and fmt.SERVICE in adv.service_uuids and adv.rssi == -50
        got = []
        async with BleakClient(device, **world.client_kwargs()) as client:   # world comes from details
            assert client.is_connected and client.mtu_size == 247
            assert client.services.get_service(fmt.SERVICE) is not None
            info = fmt.Info.parse(bytes(await client.read_gatt_char(fmt.INFO)))
            assert info.rate == 100 and [c[0] for c in info.channels][:2] == ["acc.x", "acc.y"]
            await client.start_notify(fmt.DATA, lambda _c, data: got.append(bytes(data)))
            await client.write_gatt_char(fmt.CONTROL, bytes([1, 100, 0, 0]), response=True)
            assert bytes(await client.read_gatt_char(fmt.CONTROL))[0] == 1        # streaming
            await __import__("asyncio").sleep(0.35)
            await client.write_gatt_char(fmt.CONTROL, bytes([0]), response=True)
            await client.stop_notify(fmt.DATA)
        return got

    got = world.run(main(), 20)
    assert len(got) >= 2
    seqs = [fmt.decode_packet(p, 6)[0] for p in got]
    assert seqs == list(range(len(got)))                       # every notification, in order
    assert emu.connections == 1 and emu.disconnections == 1 and not emu.streams


def test_establish_connection_and_disconnected_callback(world, rec):
    from bleak_retry_connector import establish_connection
    emu = add(world, GenericEmulator, rec)

    async def main():
        import asyncio
        device = await BleakScanner.find_device_by_address(emu.address, timeout=2, **world.scanner_kwargs())
        lost = asyncio.Event()
        client = await establish_connection(BleakClient, device, device.name,
                                            disconnected_callback=lambda _c: lost.set(), **world.client_kwargs())
        assert client.is_connected
        await emu.force_disconnect()                           # the peripheral ends the link
        await asyncio.wait_for(lost.wait(), 2)
        return client.is_connected

    assert world.run(main(), 20) is False


# ---------------------------------------------------------------------------------- streaming real data


def test_generic_streams_usc_had_at_100hz_exactly(world, rec):
    emu = add(world, GenericEmulator, rec)
    with BleSource(f"ble:generic:{emu.name}?at=hip", world=world) as src:
        assert src.rate == 100.0 and src.live and src.class_names == ()
        assert [c.name for c in src.channels] == [f"hip.{q}.{a}" for q in ("acc", "gyro") for a in "xyz"]
        assert [c.unit for c in src.channels] == ["m/s^2"] * 3 + ["rad/s"] * 3
        first_k = emu.streams["imu"].first_k
        chunks = collect(src, 1.8)
        c = src.counters()
    t, x = stacked(chunks)
    assert len(x) >= 150 and c["packets_lost"] == 0 and c["samples_lost"] == 0 and c["samples"] == len(x)
    assert [ch.seq for ch in chunks] == list(range(len(chunks))) and chunks[0].first_of_recording
    ks = first_k + np.arange(len(x))
    tol = np.repeat([SCALES["acc"], SCALES["gyro"]], 3) / 2 + 1e-5
    assert (np.abs(x - si(rec, ks)) <= tol).all()              # the recording, within int16 quantization
    assert_period(t, 0.01)                                     # 100 Hz on the host clock
    truth = emu.host_time(ks, 100.0)                           # when each sample was measured
    assert np.abs(t - truth)[steady(t)].max() < 0.01           # mapped within one sample period


def test_polar_h10_streams_raw_acc_frames(world, rec):
    emu = add(world, PolarEmulator, rec, name="Polar H10 0000AAAA")
    with BleSource(f"ble:polar:{emu.name}?rate=100", world=world) as src:
        assert [c.name for c in src.channels] == ["chest.acc.x", "chest.acc.y", "chest.acc.z"]
        first_k = emu.streams["acc"].first_k
        chunks = collect(src, 1.8)
        c = src.counters()
    t, x = stacked(chunks)
    assert len(x) >= 120 and c["samples_lost"] == 0 and c["packets_lost"] == 0
    want = si(rec, first_k + np.arange(len(x)))[:, :3]
    assert np.abs(x - want).max() <= 0.5e-3 * G + 1e-5          # int16 mG
    assert_period(t, 0.01)
    # PMD stamps the LAST sample of a frame: the mapping must put each sample at its measurement time.
    truth = emu.host_time(first_k + np.arange(len(x)), 100.0)
    assert np.abs(t - truth)[steady(t)].max() < 0.01


def test_polar_verity_sense_merges_delta_acc_and_gyro(world, rec):
    emu = add(world, PolarEmulator, rec, model="Verity Sense", name="Polar Sense 0000BBBB")
    with BleSource(f"ble:polar:{emu.name}?at=wrist", world=world) as src:
        assert src.rate == 52.0 and len(src.channels) == 6
        starts = {k: p.first_k for k, p in emu.streams.items()}
        chunks = collect(src, 1.8)
        c = src.counters()
    t, x = stacked(chunks)
    assert len(x) >= 40 and c["nan_rows"] == 0 and c["samples_lost"] == 0 and not np.isnan(x).any()
    ks = max(starts.values()) + np.arange(len(x))
    want = emu.data.block(("acc", "gyro"), 52.0, int(ks[0]), len(ks))
    tol = np.array([8000 / 32768 / 2 * 1e-3 * G] * 3 + [2000 / 32768 / 2 * math.pi / 180] * 3) + 1e-5
    assert (np.abs(x - want) <= tol).all()                     # delta frames × FACTOR, exactly decoded
    assert_period(t, 1 / 52)


# ---------------------------------------------------------------------------------- faults


def test_dropped_packets_counted_exactly(world, rec):
    emu = add(world, GenericEmulator, rec)
    with BleSource(f"ble:generic:{emu.name}", world=world) as src:
        chunks = collect(src, 1.0)                               # past the clock's warm-up
        emu.drop_next(1)
        chunks += collect(src, 0.3)
        emu.drop_next(3)
        chunks += collect(src, 0.6)
        c = src.counters()
    assert emu.dropped_packets == 4 and emu.dropped_samples == 40
    assert c["packets_lost"] == 4 and c["samples_lost"] == 40          # seq counter and time stamps agree
    assert c["gap_samples"] == 0 and c["disconnects"] == 0
    t, _ = stacked(chunks)
    jumps = np.sort(np.diff(t))[-2:]
    assert np.allclose(jumps, [0.11, 0.31], atol=0.003)               # 1 and 3 packets of 10 samples missing


def test_polar_dropped_frames_counted_from_time_stamps(world, rec):
    emu = add(world, PolarEmulator, rec, name="Polar H10 0000CCCC")
    with BleSource(f"ble:polar:{emu.name}", world=world) as src:
        collect(src, 0.5)
        emu.drop_next(2)
        collect(src, 0.9)
        c = src.counters()
    assert emu.dropped_packets == 2
    assert c["samples_lost"] == emu.dropped_samples == 40 and c["packets_lost"] == 2


@pytest.mark.parametrize("profile", ["generic", "polar"])
def test_unsolicited_disconnect_reconnects_resubscribes_and_reports_the_gap(world, rec, profile):
    cls, name = (GenericEmulator, None) if profile == "generic" else (PolarEmulator, "Polar H10 0000DDDD")
    emu = add(world, cls, rec, **({"name": name} if name else {}))
    key = "imu" if profile == "generic" else "acc"
    with BleSource(f"ble:{profile}:{emu.name}?give_up=5", world=world) as src:
        first_k = emu.streams[key].first_k
        before = collect(src, 0.6)
        world.run(emu.force_disconnect())
        after = collect(src, 3.0, until=lambda: src.counters()["reconnects"] >= 1)
        resumed_k = emu.streams[key].first_k
        after += collect(src, 0.5)
        c = src.counters()
    n_before = sum(len(ch) for ch in before) + sum(len(ch) for ch in after if ch.recording_id == before[0].recording_id)
    assert c["disconnects"] == 1 and c["reconnects"] == 1 and emu.connections == 2
    assert 0 < c["reconnect_s"] <= 2.0
    assert c["gap_samples"] == resumed_k - (first_k + n_before)         # exactly what was never sent
    assert c["samples_lost"] == 0 and c["gaps_estimated"] == 0
    new = [ch for ch in after if ch.recording_id != before[0].recording_id]
    assert new and new[0].first_of_recording and sum(len(ch) for ch in new) >= 20   # resubscribed
    _, x = stacked(new)
    want = si(rec, resumed_k + np.arange(len(x)))[:, :x.shape[1]]
    assert np.abs(x - want).max() < 0.01                      # data after the gap is the right data


def test_two_wearables_aligned_within_one_sample_period(world, rec):
    a = add(world, GenericEmulator, rec)
    # A second device powered on later, its µs clock 0.4 s from wrapping and running 30 ppm fast,
    # worn at the same time: it sees recording sample j when the first one does.
    b = GenericEmulator(rec, name=f"gene-{next(_n)}", clock_ticks0=2**32 - 400_000, drift_ppm=30)
    time.sleep(0.123)
    world.add(b)
    b.start = round((b.boot - a.boot) * 100)
    with BleSource(f"ble:generic:{a.name}?at=left", world=world) as sa, \
            BleSource(f"ble:generic:{b.name}?at=right", world=world) as sb:
        ka, kb = a.streams["imu"].first_k, b.streams["imu"].first_k
        out = {}
        # 3 s: on a loaded machine the first second of arrivals can all come late; the envelope
        # needs some prompt ones after it to find the offset
        threads = [threading.Thread(target=lambda s=s, n=n: out.__setitem__(n, collect(s, 3.0)))
                   for s, n in ((sa, "a"), (sb, "b"))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sa.counters()["samples_lost"] == sb.counters()["samples_lost"] == 0
    ta, xa = stacked(out["a"])
    tb, xb = stacked(out["b"])
    ja = ka + np.arange(len(ta))                                # recording index of each sample
    jb = b.start + kb + np.arange(len(tb))
    common, ia, ib = np.intersect1d(ja, jb, return_indices=True)
    assert len(common) >= 150
    assert np.array_equal(xa[ia], xb[ib])                       # same motion …
    warm = steady(ta)[ia]
    assert np.abs(ta[ia] - tb[ib])[warm].max() < 0.01           # … at the same host time (< 1 period)


# ---------------------------------------------------------------------------------- errors


def test_device_not_found_names_what_was_seen(world, rec):
    emu = add(world, GenericEmulator, rec)
    with pytest.raises(DeviceNotFound) as err:
        BleSource("ble:generic:no-such-band?scan=0.4", world=world)
    msg = str(err.value)
    assert "no-such-band" in msg and "0.4 s" in msg and emu.name in msg


def test_wrong_profile_names_the_missing_service(world, rec):
    emu = add(world, GenericEmulator, rec)
    with pytest.raises(WrongProfile) as err:
        BleSource(f"ble:polar:{emu.name}", world=world)
    assert emu.name in str(err.value) and "fb005c80-02e7-f387-1cad-8acd2d8df0c8" in str(err.value)
    assert emu.connection is None                              # the source let go of the device


def test_notifications_refused(world, rec):
    emu = add(world, GenericEmulator, rec, refuse_notifications=True)
    with pytest.raises(NotificationsRefused) as err:
        BleSource(f"ble:generic:{emu.name}", world=world)
    assert emu.name in str(err.value) and fmt.DATA in str(err.value)


def test_a_device_gone_for_good_is_reported_after_give_up(world, rec):
    emu = add(world, GenericEmulator, rec)
    with BleSource(f"ble:generic:{emu.name}?give_up=0.8", world=world) as src:
        collect(src, 0.2)
        world.run(emu.force_disconnect(readvertise=False))      # out of range: no advertising
        t0 = time.monotonic()
        with pytest.raises(DeviceLost) as err:
            collect(src, 5.0)
        assert time.monotonic() - t0 < 3.0 and src.counters()["reconnects"] == 0
    assert emu.name in str(err.value) and "0.8 s" in str(err.value)
    world.run(emu.come_back())


def test_unsupported_rate_is_a_usage_error(world, rec):
    emu = add(world, PolarEmulator, rec, name="Polar H10 0000EEEE")
    with pytest.raises(UsageError) as err:
        BleSource(f"ble:polar:{emu.name}?rate=52", world=world)
    assert "25, 50, 100, 200" in str(err.value)


# ---------------------------------------------------------------------------------- scan, simulate


def test_scan_names_the_profile_that_fits(world, rec):
    from streamhar.sources.ble.scan import scan
    gen = add(world, GenericEmulator, rec)
    pol = add(world, PolarEmulator, rec, name="Polar H10 0000FFFF")

    async def kettle():       # an advertiser no profile fits
        from streamhar.sources.ble.emulators.base import advertising_payloads
        dev = await world._device("kettle", "F9:00:00:00:00:01")
        adv, rsp = advertising_payloads("kettle", [])
        await dev.start_advertising(advertising_data=adv, scan_response_data=rsp,
                                    advertising_interval_min=20, advertising_interval_max=20)

    world.run(kettle())
    found = {f.name: f for f in world.run(scan(0.4, world.scanner_kwargs()), 10)}
    assert found[gen.name].profile == "generic" and found[gen.name].address == gen.address
    assert found[pol.name].profile == "polar" and found[pol.name].rssi == -50
    assert found["kettle"].profile == "unknown"


def test_cli_devices_scan_simulate(capsys):
    # In process, with only this sub-command registered: `streamhar`'s full parser imports torch
    # (seconds), which `devices scan` itself never needs.
    import argparse

    from streamhar.cli import devices_cmd
    parser = argparse.ArgumentParser(prog="streamhar")
    devices_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["devices", "scan", "--simulate", "--timeout", "0.5"])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["NAME", "ADDRESS", "RSSI", "PROFILE"]
    assert any(" generic " in ln and "ble:generic:shg-imu" in ln for ln in lines)
    assert any(ln.startswith("Polar H10") and " polar " in ln for ln in lines)


def test_simulate_spec_replays_the_recording_in_the_shared_world(rec, data_dir):
    from streamhar.sources.ble.simulate import shared_world
    spec = "ble:generic:sim-hip?simulate=replay:usc-had:12"
    with BleSource(spec, data_dir=data_dir) as a, BleSource("ble:polar:Polar H10 51A1?simulate=replay:usc-had:12",
                                                            data_dir=data_dir) as b:
        assert a.emulator.address in shared_world().peripherals and a.loop_thread is b.loop_thread
        assert [c.name for c in a.channels][:1] == ["hip.acc.x"]          # placed where it was recorded
        first_streamed = a.emulator.streams["imu"].first_k
        _, x = stacked(collect(a, 0.4))
        assert len(x) >= 20 and a.stream == spec
        # frames before the first chunks() call are skipped (counted); the source knows, out of
        # band, which recorded sample it delivered first
        k = a.sim_first_sample
        assert k >= first_streamed and (k > first_streamed) == (a.counters()["frames_before_start"] > 0)
    # the selection is concatenated: sample k is recording 12/a1t1's sample k (k < its length)
    assert np.abs(x - si(rec, k + np.arange(len(x)))).max() < 0.01
