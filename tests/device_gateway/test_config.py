import json

import pytest

from bibliodesk.runtime.settings import SettingsError
from services.device_gateway.config import RFID, SCANNER, load_gateway_config, parse_stations


def _get(values: dict[str, str]):
    return lambda key, default="": values.get(key, default)


def test_stations_from_json() -> None:
    stations = parse_stations(
        json.dumps(
            {
                "stations": [
                    {
                        "id": "desk1",
                        "branch": "CEN",
                        "devices": [
                            {"id": "s1", "kind": "scanner", "url": "/dev/ttyUSB0", "luhn_lengths": [14]},
                            {"id": "p1", "kind": "rfid", "url": "socket://10.0.0.7:4001"},
                        ],
                    }
                ]
            }
        )
    )
    (desk,) = stations
    assert desk.device(SCANNER).scanner.luhn_lengths == frozenset({14})
    pad = desk.device(RFID)
    assert (pad.driver, pad.port.baudrate, pad.port.is_local_path) == ("3m810", 19200, False)


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '[{"devices": []}]',
        '[{"id": "a", "devices": [{"id": "x", "kind": "printer", "url": "/dev/x"}]}]',
        '[{"id": "a", "devices": [{"id": "x", "kind": "rfid", "driver": "acme", "url": "/dev/x"}]}]',
        '[{"id": "a", "devices": [{"id": "a", "kind": "rfid", "url": "/dev/x"}]}]',
    ],
)
def test_bad_station_configuration_names_the_variable(text: str) -> None:
    with pytest.raises(SettingsError, match="DEVICE_GATEWAY_STATIONS"):
        parse_stations(text)


def test_site_policy_settings(tmp_path) -> None:
    path = tmp_path / "stations.json"
    path.write_text('[{"id": "d", "devices": []}]')
    config = load_gateway_config(
        _get(
            {
                "DEVICE_GATEWAY_STATIONS_FILE": str(path),
                "DEVICE_GATEWAY_AFI_SECURED": "0xD7",
                "DEVICE_GATEWAY_USE_EAS": "no",
            }
        )
    )
    assert [s.station_id for s in config.stations] == ["d"]
    assert (config.security.afi_secured, config.security.afi_unsecured) == (0xD7, 0xC2)
    assert not config.security.use_eas and not config.security.allow_locks
    with pytest.raises(SettingsError, match="AFI_UNSECURED"):
        load_gateway_config(_get({"DEVICE_GATEWAY_AFI_UNSECURED": "0x1FF"}))
    with pytest.raises(SettingsError, match="ALLOW_LOCKS"):
        load_gateway_config(_get({"DEVICE_GATEWAY_ALLOW_LOCKS": "maybe"}))
