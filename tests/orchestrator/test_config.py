from pathlib import Path

import pytest

from orchestrator.config import ConfigError, load_experiment, resolve_experiment

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "experiments" / "default.toml"


def test_defaults_and_default_file_resolve():
    config = resolve_experiment({})
    assert config.users.count == 8 and config.users.group_size == 4
    from_file = load_experiment(DEFAULT_FILE)
    assert from_file.as_dict() == config.as_dict()


def test_round_trip_through_toml(tmp_path):
    config = resolve_experiment({"channel": {"snr_db": 10}})
    assert isinstance(config.channel.snr_db, float)
    path = tmp_path / "resolved.toml"
    path.write_text(config.to_toml())
    assert load_experiment(path).as_dict() == config.as_dict()


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"chanel": {}}, "chanel", "unknown section"),
        ({"channel": {"snr": 3}}, "channel.snr", "unknown field"),
        ({"channel": {"radio": "plutto"}}, "channel.radio", "'sim'"),
        ({"users": {"grouping": "best"}}, "users.grouping", "label_aware"),
        ({"channel": {"power_control": "max"}}, "channel.power_control", "mmse"),
        ({"data": {"dataset": "imagenet"}}, "data.dataset", "digits"),
        ({"users": {"count": "8"}}, "users.count", "expected int"),
        ({"users": {"count": True}}, "users.count", "expected int"),
        ({"users": {"count": 0}}, "users.count", ">= 1"),
        ({"model": {"feature_dim": 7}}, "model.feature_dim", "even"),
        ({"users": {"count": 3, "group_size": 4}}, "users.group_size", "<= users.count"),
        ({"attacks": {"enabled": ["model_inversion", "x"]}}, "attacks.enabled", "'x'"),
        ({"experiment": {"target_accuracy": 1.5}}, "experiment.target_accuracy", "<= 1"),
        ({"channel": {"radio": "inventory"}}, "channel.inventory", "needs the inventory"),
        ({"users": {"remote_nodes": ["a b"]}}, "users.remote_nodes", "node ids"),
        ({"users": {"remote_nodes": ["a", "a"]}}, "users.remote_nodes", "unique"),
        ({"attacks": {"eavesdropper": "yes"}}, "attacks.eavesdropper", "true or false"),
        ({"attacks": {"eavesdropper_snr_db": 90}}, "attacks.eavesdropper_snr_db", "<= 60"),
        (
            {
                "channel": {"radio": "inventory", "inventory": "lab.toml"},
                "attacks": {"eavesdropper": True},
            },
            "attacks.eavesdropper",
            "allowed there: false",
        ),
    ],
)
def test_bad_fields_are_named_with_allowed_values(raw, field, words):
    with pytest.raises(ConfigError) as error:
        resolve_experiment(raw)
    assert error.value.field == field
    assert words in str(error.value)


def test_eavesdropper_defaults_follow_the_back_end_and_the_snr():
    config = resolve_experiment({"channel": {"snr_db": 7}})
    assert config.attacks.eavesdropper is True
    assert config.attacks.eavesdropper_snr_db == 7.0
    virtual = resolve_experiment({"channel": {"radio": "virtual-pluto"}})
    assert virtual.attacks.eavesdropper is True
    lab = resolve_experiment({"channel": {"radio": "inventory", "inventory": "lab.toml"}})
    assert lab.attacks.eavesdropper is False  # no eavesdropper among lab radios
    off = resolve_experiment({"attacks": {"eavesdropper": False, "eavesdropper_snr_db": 3}})
    assert off.attacks.eavesdropper is False and off.attacks.eavesdropper_snr_db == 3.0
    assert "eavesdropper_snr_db = 7.0" in config.to_toml()  # resolved: no hidden default


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_experiment(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[channel\nradio = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_experiment(bad)


def test_a_node_hosts_at_most_as_many_users_as_its_hello_can_list():
    from orchestrator.preflight import check_nodes

    check_nodes(resolve_experiment({"users": {"count": 8192, "node_processes": 2}}))
    with pytest.raises(ConfigError, match="users.node_processes.*need at least 3 nodes, got 2"):
        check_nodes(resolve_experiment({"users": {"count": 8193, "node_processes": 2}}))
    with pytest.raises(ConfigError, match="users.remote_nodes"):
        check_nodes(resolve_experiment({"users": {"count": 4097, "remote_nodes": ["lab"]}}))
