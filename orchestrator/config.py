"""Experiment files: schema, defaults, validation and the resolved configuration.

An experiment is a TOML file with the sections of :data:`SCHEMA`; every field is
optional and falls back to its default. Validation names the offending field and
the allowed values, e.g. ``channel.radio: 'plutto' is not one of ['inventory',
'sim', 'virtual-pluto']``. Choices that come from a registry elsewhere in airmix
(grouping policies, power-control policies, data sets, ...) are read from that
registry, so adding an implementation there makes it selectable here.

>>> config = load_experiment("experiments/default.toml")
>>> config.users.group_size
4
"""

from __future__ import annotations

import importlib
import importlib.util
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import tomli_w

from radio.pluto_limits import LO_RANGE_HZ, SAMPLE_RATE_RANGE_HZ


class ConfigError(ValueError):
    """An experiment file is invalid; ``field`` is the dotted path of the bad field."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field = field_path


def _registry_keys(module: str, attribute: str) -> Callable[[], list[str]]:
    """Allowed values read lazily from ``module.attribute`` (a dict keyed by name)."""

    def keys() -> list[str]:
        return sorted(getattr(importlib.import_module(module), attribute))

    return keys


@dataclass(frozen=True)
class Field:
    """One field of the schema: its type, default, allowed values or range, and meaning.

    A ``default`` of None means the default depends on other fields; it is filled in by
    :data:`DERIVED_DEFAULTS` (the resolved configuration never holds None)."""

    kind: type
    default: Any
    doc: str
    choices: tuple[str, ...] | Callable[[], list[str]] | None = None
    minimum: float | None = None
    maximum: float | None = None
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)

    def allowed(self) -> list[str] | None:
        if self.choices is None:
            return None
        return sorted(self.choices() if callable(self.choices) else self.choices)


def _node_ids(value: list) -> str | None:
    import re

    if not all(isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v) for v in value):
        return "node ids must be strings of letters, digits, '_', '.', '-' (1-64 characters)"
    if len(set(value)) != len(value):
        return "node ids must be unique"
    return None


def _even(value: int) -> str | None:
    return None if value % 2 == 0 else "must be even (pairs of reals form complex symbols)"


def _plain_name(value: str) -> str | None:
    """A run name is one path component, so the run directory stays inside the output
    folder."""
    if value in ("", ".", "..") or "/" in value or "\\" in value or len(value) > 200:
        allowed = "1-200 characters, no '/', '\\', '.' or '..'"
        return f"must be a plain name ({allowed}), got {value!r}"
    return None


#: section -> field name -> Field. The single source of truth for experiment files.
SCHEMA: dict[str, dict[str, Field]] = {
    "experiment": {
        "name": Field(
            str, "default", "run name, used in the run directory name", check=_plain_name
        ),
        "seed": Field(int, 0, "root seed of every random draw", minimum=0),
        "rounds": Field(int, 60, "training rounds (one pass over every user's data)", minimum=1),
        "eval_every": Field(int, 1, "evaluate the model every N rounds", minimum=1),
        "target_accuracy": Field(
            float, 0.9, "accuracy at which channel uses are counted", minimum=0, maximum=1
        ),
        "eval_channel_uses": Field(
            int,
            0,
            "also evaluate every N payload channel uses within rounds (0: at round ends "
            "only); resolves the channel uses to reach target_accuracy finer than a round",
            minimum=0,
        ),
        "out_dir": Field(str, "runs", "parent directory of run directories"),
    },
    "data": {
        "dataset": Field(
            str, "digits", "data set", choices=_registry_keys("learning.data", "DATASETS")
        ),
        "root": Field(str, "", "directory holding MNIST / Fashion-MNIST / CIFAR-10 files"),
        "split": Field(str, "iid", "how data is spread over users", ("iid", "dirichlet", "shards")),
        "alpha": Field(float, 1.0, "Dirichlet concentration for split = 'dirichlet'", minimum=1e-6),
        "labels_per_user": Field(int, 2, "labels per user for split = 'shards'", minimum=1),
        "auxiliary_fraction": Field(
            float,
            0.2,
            "fraction of training data held out for the attacker",
            minimum=0,
            maximum=0.9,
        ),
        "downsample": Field(
            int,
            1,
            "average-pool images over N x N pixels (e.g. 4: Fashion-MNIST's 28x28 to 7x7, "
            "short raw frames that do not clip at population scale)",
            minimum=1,
            maximum=16,
        ),
    },
    "users": {
        "count": Field(int, 8, "number of users", minimum=1),
        "group_size": Field(int, 4, "users transmitting in the same slot", minimum=1),
        "grouping": Field(
            str,
            "label_aware",
            "grouping policy",
            choices=_registry_keys("orchestrator.grouping", "GROUPING_POLICIES"),
        ),
        "node_processes": Field(
            int, 2, "local node processes the users are spread over", minimum=1
        ),
        "remote_nodes": Field(
            list,
            [],
            "ids of nodes started elsewhere (airmix node ...); none are spawned locally",
            check=_node_ids,
        ),
        "backend": Field(
            str,
            "local",
            "where node processes run: local processes, or Ray actors on a local or "
            "existing cluster (ray.address; needs the optional extra airmix[ray])",
            ("local", "ray"),
        ),
    },
    "method": {
        "name": Field(
            str,
            "oam",
            "privacy method (learning.methods); its own fields follow in this section",
            choices=_registry_keys("learning.methods", "METHODS"),
        ),
    },
    "model": {
        "mode": Field(str, "raw", "payload: raw samples or encoder features", ("raw", "features")),
        "arch": Field(str, "mlp", "encoder architecture", ("mlp", "cnn")),
        "feature_dim": Field(int, 32, "encoder output size (reals)", minimum=2, check=_even),
        "learning_rate": Field(float, 0.003, "optimizer learning rate (Adam)", minimum=1e-9),
        "batch_size": Field(int, 32, "samples per user per slot", minimum=1),
    },
    "channel": {
        "radio": Field(
            str,
            "sim",
            "radio back-end for every user and the receiver",
            choices=_registry_keys("orchestrator.radios", "RUN_RADIOS"),
        ),
        "inventory": Field(
            str, "", "lab inventory TOML of real Plutos (channel.radio = 'inventory')"
        ),
        "snr_db": Field(
            float, 20.0, "per-user receive SNR at full power, unit gain", minimum=-20, maximum=60
        ),
        "fading": Field(
            str, "rayleigh", "block fading", choices=_registry_keys("phy.channel", "CHANNEL_MODELS")
        ),
        "power_control": Field(
            str, "mmse", "Tx-Rx scaling", choices=_registry_keys("phy.power", "POWER_POLICIES")
        ),
        "mixing": Field(
            str,
            "equal",
            "mixing weights",
            choices=_registry_keys("learning.mixup", "MIXING_POLICIES"),
        ),
        "carrier_hz": Field(
            float, 915e6, "carrier frequency", minimum=LO_RANGE_HZ[0], maximum=LO_RANGE_HZ[1]
        ),
        "sample_rate_hz": Field(
            float,
            1e6,
            "baseband sample rate",
            minimum=SAMPLE_RATE_RANGE_HZ[0],
            maximum=SAMPLE_RATE_RANGE_HZ[1],
        ),
        "max_ppm": Field(
            float, 25.0, "oscillator errors drawn in +-max_ppm", minimum=0, maximum=100
        ),
        "time_base": Field(
            str,
            "stream",
            "slot timing (radio.time_base): continuous streams (any firmware), TDD engine "
            "on a shared sync pulse (firmware >= v0.39), or the cyclic loop on an ideal "
            "constant-latency medium (a reference; sim only)",
            ("stream", "tdd", "ideal"),
        ),
        "sync_period_s": Field(
            float, 0.02, "tdd: period of the shared sync pulse", minimum=1e-3, maximum=10.0
        ),
        "schedule": Field(
            str,
            "sequential",
            "how the ideal loop plays a round: group after group, one request per pilot and "
            "slot (sequential), or every group's pilots, then every slot, laid out ahead on "
            "the simulated medium's clock, one request per node each (planned: population "
            "scale; sim radio and ideal time base only)",
            ("sequential", "planned"),
        ),
    },
    "attacks": {
        "enabled": Field(
            list,
            ["model_inversion", "label_inference"],
            "attacks run on what the server and an eavesdropper saw",
            choices=_registry_keys("learning.attacks", "ATTACKS"),
        ),
        "eavesdropper": Field(
            bool,
            None,
            "a passive eavesdropper radio records the last round and is attacked too "
            "(default: true on 'sim' and 'virtual-pluto', false on 'inventory', which "
            "does not support it)",
        ),
        "eavesdropper_snr_db": Field(
            float,
            None,
            "the eavesdropper's per-user SNR at full power, unit gain (default: channel.snr_db)",
            minimum=-20,
            maximum=60,
        ),
        "membership": Field(
            bool,
            False,
            "membership inference on the final server model (raw mode; "
            "orchestrator.membership_audit)",
        ),
        "membership_shadows": Field(
            int, 16, "shadow models per family of the membership audit", minimum=2
        ),
        "membership_samples": Field(
            int, 500, "members (and as many non-members) the membership audit tests", minimum=10
        ),
    },
    "ray": {
        "address": Field(
            str,
            "",
            "users.backend = 'ray': the cluster to join ('auto', 'ray://HOST:PORT', "
            "'HOST:PORT'); empty: the run starts a local cluster and stops it at the end",
        ),
        "cpus_per_node": Field(
            float,
            0.5,
            "CPUs Ray reserves for each node actor (fractions pack several per core)",
            minimum=0.01,
            maximum=256,
        ),
        "cluster_cpus": Field(
            int,
            0,
            "CPUs of the local cluster the run starts (0: the machine's count)",
            minimum=0,
        ),
    },
    "link": {
        "curve": Field(bool, True, "CurveZMQ encryption and authentication"),
        "endpoint": Field(
            str, "tcp://127.0.0.1:*", "where the orchestrator listens (remote nodes: a LAN address)"
        ),
        "heartbeat_s": Field(float, 0.5, "heartbeat interval", minimum=0.01),
        "liveness_s": Field(float, 3.0, "a node silent this long is dead", minimum=0.05),
        "request_timeout_s": Field(float, 20.0, "per-request timeout", minimum=0.01),
        "retries": Field(int, 2, "retries of a timed-out request", minimum=0),
    },
}


#: (section, field) -> its default computed from the other resolved sections
DERIVED_DEFAULTS: dict[tuple[str, str], Callable[[dict[str, SimpleNamespace]], Any]] = {
    ("attacks", "eavesdropper"): lambda s: s["channel"].radio in ("sim", "virtual-pluto"),
    ("attacks", "eavesdropper_snr_db"): lambda s: s["channel"].snr_db,
}


def _method_schema(body: Any) -> dict[str, Field]:
    """The ``[method]`` fields: ``name`` plus the chosen method's own options
    (:attr:`learning.methods.base.Method.options`)."""
    name_field = SCHEMA["method"]["name"]
    name = body.get("name", name_field.default) if isinstance(body, dict) else name_field.default
    fields = {"name": name_field}
    if name not in (name_field.allowed() or []):
        return fields  # the name check reports it
    methods = importlib.import_module("learning.methods").METHODS
    for option, spec in methods[name].options.items():
        fields[option] = Field(
            spec.kind, spec.default, spec.doc, spec.choices, spec.minimum, spec.maximum
        )
    return fields


def _check_method_options(method: SimpleNamespace) -> None:
    """Checks across the chosen method's options, if it has them
    (``check_options(options) -> (option, problem) | None`` on the method class)."""
    cls = importlib.import_module("learning.methods").METHODS[method.name]
    check = getattr(cls, "check_options", None)
    options = {k: v for k, v in vars(method).items() if k != "name"}
    if check is not None and (problem := check(options)) is not None:
        raise ConfigError(f"method.{problem[0]}", problem[1])


class ExperimentConfig(SimpleNamespace):
    """A validated experiment: one attribute per section, each a namespace of fields."""

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {section: dict(vars(getattr(self, section))) for section in SCHEMA}

    def to_toml(self) -> str:
        return tomli_w.dumps(self.as_dict())


def _check_value(path: str, spec: Field, value: Any) -> Any:
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if spec.kind is not bool and isinstance(value, bool) or not isinstance(value, spec.kind):
        allowed = "; allowed: true or false" if spec.kind is bool else ""
        raise ConfigError(
            path, f"expected {spec.kind.__name__}, got {type(value).__name__} {value!r}{allowed}"
        )
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str) and any(ord(c) < 32 or ord(c) == 127 for c in item):
            raise ConfigError(
                path, f"must not contain control characters (NUL, newline, ...), got {item!r}"
            )
    if spec.kind is float and value != value:  # NaN
        raise ConfigError(path, "must be a number, got NaN")
    if spec.minimum is not None and value < spec.minimum:
        raise ConfigError(path, f"must be >= {spec.minimum}, got {value!r}")
    if spec.maximum is not None and value > spec.maximum:
        raise ConfigError(path, f"must be <= {spec.maximum}, got {value!r}")
    allowed = spec.allowed()
    if allowed is not None:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item not in allowed:
                raise ConfigError(path, f"{item!r} is not one of {allowed}")
    if spec.check is not None and (problem := spec.check(value)):
        raise ConfigError(path, problem)
    return value


def resolve_experiment(raw: dict[str, Any]) -> ExperimentConfig:
    """Validate a parsed experiment mapping and fill in defaults.

    Raises:
        ConfigError: unknown section or field, wrong type, out of range, or not allowed.
    """
    if not isinstance(raw, dict):
        raise ConfigError("<file>", "an experiment file must be a TOML table")
    schema = {**SCHEMA, "method": _method_schema(raw.get("method"))}
    for section, body in raw.items():
        if section not in schema:
            raise ConfigError(section, f"unknown section; allowed sections: {sorted(schema)}")
        if not isinstance(body, dict):
            raise ConfigError(section, "must be a table ([section])")
        for name in body:
            if name not in schema[section]:
                raise ConfigError(
                    f"{section}.{name}", f"unknown field; allowed: {sorted(schema[section])}"
                )
    sections = {}
    for section, fields in schema.items():
        body = raw.get(section, {})
        values = {}
        for name, spec in fields.items():
            value = body.get(name, spec.default)
            if value is None and spec.default is None and name not in body:
                values[name] = None  # derived below, once every section is resolved
            else:
                values[name] = _check_value(f"{section}.{name}", spec, value)
        sections[section] = SimpleNamespace(**values)
    for (section, name), derive in DERIVED_DEFAULTS.items():
        if getattr(sections[section], name) is None:
            setattr(sections[section], name, derive(sections))
    config = ExperimentConfig(**sections)
    _check_method_options(config.method)
    if config.users.group_size > config.users.count:
        raise ConfigError(
            "users.group_size",
            f"must be <= users.count ({config.users.count}), got {config.users.group_size}",
        )
    if config.channel.radio == "inventory" and not config.channel.inventory:
        raise ConfigError(
            "channel.inventory", "channel.radio = 'inventory' needs the inventory file's path"
        )
    if config.attacks.membership and config.model.mode != "raw":
        raise ConfigError(
            "attacks.membership",
            "needs model.mode = 'raw' (in feature mode the server holds only the head; the "
            "full models stay with the users); allowed here: false",
        )
    if config.channel.schedule == "planned" and (
        config.channel.radio != "sim" or config.channel.time_base != "ideal"
    ):
        raise ConfigError(
            "channel.schedule",
            "'planned' lays out windows of air ahead of a simulated medium's clock: it needs "
            "channel.radio = 'sim' and channel.time_base = 'ideal' (got "
            f"{config.channel.radio!r}, {config.channel.time_base!r}); allowed there: "
            "'sequential'",
        )
    if config.attacks.eavesdropper and config.channel.radio == "inventory":
        raise ConfigError(
            "attacks.eavesdropper",
            "not supported with channel.radio = 'inventory' (a lab radio cannot capture the "
            "receiver's window of air); allowed there: false",
        )
    if config.users.backend == "ray":
        if config.users.remote_nodes:
            raise ConfigError(
                "users.remote_nodes",
                "must be empty with users.backend = 'ray' (Ray places every node); "
                "allowed there: []",
            )
        if importlib.util.find_spec("ray") is None:
            raise ConfigError(
                "users.backend",
                "'ray' needs Ray (pip install 'airmix[ray]'); allowed without it: ['local']",
            )
    if len(config.users.remote_nodes) > config.users.count:
        raise ConfigError(
            "users.remote_nodes",
            f"more nodes ({len(config.users.remote_nodes)}) than users ({config.users.count})",
        )
    if config.users.node_processes > config.users.count:
        raise ConfigError(
            "users.node_processes",
            f"must be <= users.count ({config.users.count}), got {config.users.node_processes}",
        )
    return config


def load_experiment(path: str | Path | None = None) -> ExperimentConfig:
    """Read and validate an experiment TOML file (``None``: all defaults)."""
    if path is None:
        return resolve_experiment({})
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise ConfigError("<file>", f"cannot read experiment file {path}: {error}") from error
    except UnicodeDecodeError as error:
        raise ConfigError("<file>", f"{path} is not UTF-8 text: {error}") from error
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("<file>", f"{path} is not valid TOML: {error}") from error
    return resolve_experiment(raw)
