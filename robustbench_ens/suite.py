"""Suites: TOML files naming the data, threat model, models, attacks and defenses of a run.

A suite is data, never code: values are parsed by ``tomllib`` and names map to classes only
through the registries. A shipped suite is named by its stem (``cifar10``, ``smoke``); any
other suite by its path. Schema (every table is checked; unknown keys are errors)::

    name = "cifar10"
    description = "..."
    extends = "smoke"                        # optional: a base suite; its [models] and [train] are merged
                                             # with this file's by key, every other key this file gives
                                             # replaces the base's (attacks, defenses, threat, data, ...)
    surrogates = ["resnet20", ...]          # default surrogate set of the transfer attacks

    [pools]                                  # optional: named surrogate pools; every transfer attack that
    homo = ["resnet20", "resnet32"]          # names neither surrogates nor pools runs on each of them, as
    hetero = ["resnet20", "densenet40"]      # "<name>@<pool>" (e.g. "Ens@hetero")

    [data]   n_examples = 500   batch_size = 250
    [threat] norm = "Linf"   eps = ["4/255", "8/255"]   headline_eps = "8/255"
    [run]    seed = 0   device = "auto"
    [train]  epochs = 30 ...                 # default recipe for models absent from --models

    [models.resnet20]                        # a model the suite can use
    arch = "resnet20_a"                      # a zoo architecture
    checkpoint = "resnet20_a_standard"       # <models dir>/<checkpoint>.safetensors, if present
    source = "..."                           # where that checkpoint comes from (shown on the page)
    licence = "MIT"                          # its licence, where the file's metadata has no `license`
    require_checkpoint = false               # true: never train a stand-in (e.g. DVERGE, adversarial training)
    train = { epochs = 10 }                  # recipe overrides when it must be trained

    [models.carmon]                          # a model another library loads with its own weights (zoo.external)
    arch = "robustbench:Carmon2019Unlabeled" # RobustBench's CIFAR-10 model zoo, or "timm:<name>" (pretrained timm)
    threat_model = "Linf"                    # robustbench only: Linf (default), L2 or corruptions

    [models_from]                            # optional: [models] tables taken verbatim from other suites
    dverge_protocol = ["dverge_ours"]        # (one recipe, so one cached copy of a trained model)

    [models.lgv_resnet20]                    # a derived model: made here from other [models] entries
    method = "lgv"                           # lgv, mba, csgld, dverge, self_ensemble, finetune (zoo.derived)
    from = ["resnet20"]                      # its bases: plain models
    params = { samples_per_epoch = 4 }       # the method's options
    train = { epochs = 10, lr = 0.05 }       # overrides of the method's training recipe

    [[attacks]]
    name = "Ens"                             # the leaderboard's label
    attack = "ens"                           # registry name
    params = { steps = 10 }
    surrogates = [...]                       # optional; defaults to every pool, else the top-level list
    pools = ["hetero"]                       # optional: only these of the suite's [pools]
    eps = ["8/255"]                          # optional: a subset of [threat] eps
    defenses = ["DVERGE"]                    # optional: the defenses it runs on (default: all)

    [[attacks]]                              # a white-box attack: crafted per defense
    name = "PGD-adaptive"
    attack = "pgd"
    on = "adaptive"                          # "surrogates" (transfer, the default), "defense"
                                             # (the defense itself) or "adaptive" (its adaptive view)
    eot = 10                                 # EOT samples against a randomised defense (detected)

    [[defenses]]
    name = "baseline"   kind = "ensemble"   members = ["m0", "m1", "m2"]   params = {}
    group = "standard"                       # optional: transfer attacks are also compared per group

    [[defenses]]
    name = "CNN-A (certified)"   members = ["cnn_a"]   # kind "single" (the default)
    certify = "ibp"                          # optional: IBP's certified points at every eps, a floor that no
                                             # attack may break (robustbench_ens.certify)
"""
from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from fractions import Fraction
from importlib import resources
from pathlib import Path

CLEAN = "clean"  # the reserved attack name of the no-attack row


class SuiteError(ValueError):
    """A suite file or an override is invalid; the message says what to change."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    arch: str
    checkpoint: str | None = None
    train: dict = field(default_factory=dict)
    seed: int = 0
    source: str = ""  # where a pretrained checkpoint comes from, shown on the leaderboard
    licence: str = ""  # the weights' licence, where the file's own metadata (``license``) does not state it
    require_checkpoint: bool = False  # True where the zoo's standard recipe cannot reproduce the model
    method: str | None = None  # set for a derived model (zoo.derived): how it is made from its bases
    bases: tuple[str, ...] = ()  # the plain models a derived model is made from
    params: dict = field(default_factory=dict)  # the method's options
    threat_model: str = "Linf"  # the RobustBench leaderboard of a "robustbench:<name>" model (ROBUSTBENCH_THREATS)


ATTACK_TARGETS = ("surrogates", "defense", "adaptive")  # what an attack's gradients come from
CERTIFIERS = ("ibp",)  # certify = ...: interval bound propagation (robustbench_ens.certify)
SUPPLIED = "supplied"  # the arch of a model handed in by the caller (robustbench_ens.benchmark), not built from a file
EXTERNAL_LIBRARIES = ("robustbench", "timm")  # arch = "<library>:<name>": a model that library loads (zoo.external)
ROBUSTBENCH_THREATS = ("Linf", "L2", "corruptions")  # RobustBench's CIFAR-10 leaderboards


@dataclass(frozen=True)
class AttackEntry:
    name: str
    attack: str
    params: dict
    surrogates: tuple[str, ...]
    on: str = "surrogates"  # "surrogates": a transfer attack; "defense" / "adaptive": white-box, per defense
    eps: tuple[float, ...] | None = None  # a subset of the suite's eps; None: all of them
    eot: int = 10  # white-box: EOT samples used against a defense whose forward pass is random
    defenses: tuple[str, ...] | None = None  # the defenses it runs on; None: all of them
    pool: str | None = None  # the surrogate pool (of the suite's [pools]) it is crafted on, if any
    family: str = ""  # the name the suite file gives it; ``name`` adds "@<pool>" for an attack run on each pool
    restart: int = 0  # of an attack run ``restarts`` times ("<name>#<r>"): which run; its seed is the suite's + r
    cascade: bool = False  # white-box: attack only the points still robust after the cascaded attacks listed before

    @property
    def whitebox(self) -> bool:
        return self.on != "surrogates"

    def runs_on(self, defense: str) -> bool:
        return self.defenses is None or defense in self.defenses

    def eps_values(self, suite_eps) -> list[float]:
        """The budgets this attack runs at: the suite's, or the subset it names."""
        return [e for e in suite_eps if self.eps is None or e in self.eps]


@dataclass(frozen=True)
class DefenseEntry:
    name: str
    kind: str
    members: tuple[str, ...]
    params: dict
    certify: str | None = None  # a certified floor to check the attacks against (one of CERTIFIERS), if any
    group: str | None = None  # a kind of target (e.g. "adversarially trained"): attacks are also compared per group


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    source: str
    n_examples: int
    batch_size: int
    norm: str
    eps: tuple[float, ...]
    headline_eps: float
    seed: int
    device: str
    train: dict
    models: dict[str, ModelEntry]
    attacks: tuple[AttackEntry, ...]
    defenses: tuple[DefenseEntry, ...]
    pools: dict[str, tuple[str, ...]] = field(default_factory=dict)  # surrogate pool name -> its models
    slice: str = ""  # set by apply_overrides: how this grid is smaller than the suite file's (shown on the page)

    def model_names(self) -> list[str]:
        """Every model the suite's attacks and defenses use, in first-use order; a derived model's bases before it."""
        names = [m for a in self.attacks for m in a.surrogates] + [m for d in self.defenses for m in d.members]
        return list(dict.fromkeys(n for name in names for n in (*self.models[name].bases, name)))


def shipped_suites() -> list[str]:
    folder = resources.files("robustbench_ens") / "suites"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_suite(name_or_path: str) -> Suite:
    """A shipped suite by name, or a suite file by path (with the suite it ``extends``, if any)."""
    raw, source = _read_suite(name_or_path)
    return parse_suite(raw, source)


def _read_suite(name_or_path: str, extended_by: tuple[str, ...] = ()) -> tuple[dict, str]:
    """The suite's raw tables, merged onto those of the suite it extends; and where they come from."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SuiteError(f"no suite file {path}")
        text, source = path.read_text(encoding="utf-8"), str(path)
    elif name_or_path in shipped_suites():
        resource = resources.files("robustbench_ens") / "suites" / f"{name_or_path}.toml"
        text, source = resource.read_text(encoding="utf-8"), f"robustbench_ens/suites/{name_or_path}.toml"
    else:
        raise SuiteError(f"unknown suite {name_or_path!r}: pass a .toml path or one of {', '.join(shipped_suites())}")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SuiteError(f"{source} is not valid TOML: {error}") from None
    _take_models(raw, source, path, (*extended_by, name_or_path))
    base = raw.pop("extends", None)
    if base is None:
        return raw, source
    if not isinstance(base, str):
        raise SuiteError(f"{source}: extends must be a suite name or path, got {base!r}")
    base = _beside(base, path)
    if base in (*extended_by, name_or_path):
        raise SuiteError(f"{source}: suites extend each other in a cycle "
                         f"({' -> '.join((*extended_by, name_or_path, base))})")
    base_raw, base_source = _read_suite(base, (*extended_by, name_or_path))
    return _extended(base_raw, raw), f"{source} (extends {base_source})"


def _beside(name: str, path: Path) -> str:
    """A suite named by a relative path in a suite file: the file beside it if there is one, else ``name``."""
    if not Path(name).is_absolute() and path.suffix == ".toml" and (path.parent / name).exists():
        return str(path.parent / name)
    return name


def _take_models(raw: dict, source: str, path: Path, chain: tuple[str, ...]) -> None:
    """[models_from]: adds the named [models] tables of other suites to ``raw``'s, verbatim, so that two suites
    sharing a trained model share one recipe (and one cached copy) by construction."""
    wanted = raw.pop("models_from", {})
    if not isinstance(wanted, dict):
        raise SuiteError(f"{source}: [models_from] must map suite names to lists of model names")
    models = raw.setdefault("models", {})
    for other, names in wanted.items():
        names, located = _names(names, f"{source} [models_from]", other), _beside(other, path)
        if located in chain:
            raise SuiteError(f"{source}: [models_from] takes models from {other!r}, which takes them from this suite")
        their = _read_suite(located, chain)[0].get("models", {})
        for name in names:
            if name not in their:
                raise SuiteError(f"{source}: [models_from] {other} has no model {name!r}")
            if name in models:
                raise SuiteError(f"{source}: model {name!r} is both under [models] and taken from {other!r}")
            models[name] = their[name]


MERGED_TABLES = ("models", "train")  # taken from the base suite key by key; any other key is replaced whole


def _extended(base: dict, raw: dict) -> dict:
    """``raw`` over ``base``: [models] and [train] merged by key, every other key (tables included) replaced."""
    merged = {**base, **raw}
    for key in MERGED_TABLES:
        if isinstance(base.get(key), dict) and isinstance(raw.get(key), dict):
            merged[key] = {**base[key], **raw[key]}
    return merged


def parse_eps(value, norm: str = "Linf") -> float:
    """``"8/255"``, ``0.0314`` or ``"0.0314"`` -> float; an Linf budget above 1 (``8``) is refused as ambiguous.

    An L2 budget may exceed 1 (RobustBench's is 0.5; 4.0 is a sanity-check budget at which
    a working attack leaves about 0 %).
    """
    try:
        eps = float(Fraction(value.strip())) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError, TypeError):
        raise SuiteError(f"eps {value!r} is not a number; write it like 8/255") from None
    if not math.isfinite(eps) or eps < 0:
        raise SuiteError(f"eps must be >= 0, got {value!r}")
    if eps > 1 and norm != "L2":
        raise SuiteError(f"eps {value!r} is above 1 on images in [0, 1]; did you mean {value}/255?")
    return eps


_EPS_MULTIPLE = re.compile(r"^\s*(?:eps\s*/\s*(?P<div>[0-9.eE+-]+)|(?P<mul>[0-9.eE+-]+)\s*\*\s*eps|eps)\s*$")


def at_eps(params: dict, eps: float) -> dict:
    """An attack's parameters at budget ``eps``: a value written relative to the budget (``"eps/5"``, ``"2.5*eps"``,
    ``"eps"``) becomes that number, as papers give step sizes; every other value is kept."""
    return {key: _eps_multiple(value, eps, key) for key, value in params.items()}


def _eps_multiple(value, eps: float, key: str):
    if not isinstance(value, str) or "eps" not in value:
        return value
    match = _EPS_MULTIPLE.match(value)
    try:
        number = None if match is None else float(match["div"] or match["mul"] or 1)
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or number <= 0:
        raise SuiteError(f"parameter {key} = {value!r}: write a step relative to the budget as \"eps/<number>\" "
                         f"or \"<number>*eps\" with a positive number")
    return eps / number if match["div"] else eps * number


def parse_budgets(values, norm: str, where: str) -> tuple[float, ...]:
    """``values`` parsed by :func:`parse_eps`, each once, in order; an error names ``where`` they came from."""
    try:
        return tuple(dict.fromkeys(parse_eps(e, norm) for e in values))
    except SuiteError as error:
        raise SuiteError(f"{where}: {error}") from None


def apply_overrides(suite: Suite, *, attacks=None, defenses=None, eps=None, n_examples=None,
                    device=None, seed=None) -> Suite:
    """The CLI's overrides: subsets of attacks/defenses by name, and replaced scalars."""
    changes = {}
    if attacks is not None:
        changes["attacks"] = _select(suite.attacks, attacks, "attack")
    if defenses is not None:
        changes["defenses"] = _select(suite.defenses, defenses, "defense")
    if eps is not None:
        values = parse_budgets(eps, suite.norm, "--eps")
        if not values:
            raise SuiteError("--eps needs at least one value")
        changes["eps"] = values
        if suite.headline_eps not in values:
            changes["headline_eps"] = max(values)
    if n_examples is not None:
        changes["n_examples"] = _positive_int(n_examples, "--n-examples")
    if device is not None:
        changes["device"] = device
    if seed is not None:
        changes["seed"] = _int(seed, "--seed")
    return _checked(replace(suite, **changes, slice=_slice_text(suite, changes)))


def _slice_text(suite: Suite, changes: dict) -> str:
    """What the overrides left of the suite's grid, in words ("" when they leave all of it)."""
    from .leaderboard.format import fmt_eps  # here: the leaderboard package imports this module
    parts = []
    for key, what in (("attacks", "attack"), ("defenses", "defense")):
        if key in changes and len(changes[key]) < len(getattr(suite, key)):
            parts.append(f"{len(changes[key])} of its {len(getattr(suite, key))} {what}s")
    if "eps" in changes and set(changes["eps"]) != set(suite.eps):
        relation = "of" if set(changes["eps"]) < set(suite.eps) else "instead of"
        parts.append(f"eps {', '.join(fmt_eps(e) for e in changes['eps'])} {relation} its "
                     f"{', '.join(fmt_eps(e) for e in suite.eps)}")
    if changes.get("n_examples", suite.n_examples) < suite.n_examples:
        parts.append(f"the first {changes['n_examples']} of its {suite.n_examples} test points")
    if changes.get("seed", suite.seed) != suite.seed:
        parts.append(f"seed {changes['seed']} instead of its {suite.seed}")
    return "; ".join(parts)


def _select(entries, names, what):
    """The entries named (an attack run on several pools is also named by its family: ``Ens`` is every ``Ens@pool``),
    in the order named."""
    by_name: dict[str, list] = {}
    if not names:
        raise SuiteError(f"--{what}s names no {what} (it takes a comma-separated list of the suite's {what}s)")
    for entry in entries:
        by_name.setdefault(entry.name, []).append(entry)
        if getattr(entry, "family", "") not in ("", entry.name):
            by_name.setdefault(entry.family, []).append(entry)
    _refuse_unknown(names, by_name, f"unknown {what}", "in this suite", f"it has: {', '.join(by_name)}")
    chosen = []
    for entry in (entry for name in names for entry in by_name[name]):
        if not any(entry is seen for seen in chosen):
            chosen.append(entry)
    return tuple(chosen)


def _refuse_unknown(names, known, what: str, where: str, listing: str) -> None:
    """A SuiteError naming the ``names`` not in ``known``, with the closest known names and ``listing``."""
    unknown = [name for name in names if name not in known]
    if unknown:
        close = [match for name in unknown for match in difflib.get_close_matches(name, list(known), n=2)]
        hint = f"; did you mean {', '.join(dict.fromkeys(close))}?" if close else ""
        raise SuiteError(f"{what} {', '.join(map(repr, unknown))}{' ' + where if where else ''}{hint} ({listing})")


def parse_suite(raw: dict, source: str) -> Suite:
    top = _Table(raw, source)
    data = _Table(top.get("data", {}), f"{source} [data]")
    threat = _Table(top.get("threat", {}), f"{source} [threat]")
    run = _Table(top.get("run", {}), f"{source} [run]")
    default_surrogates = top.names("surrogates")
    pools = {name: _names(members, f"{source} [pools]", name) for name, members in top.table("pools").items()}
    models = {name: _model_entry(name, spec, source) for name, spec in top.table("models").items()}
    norm = threat.text("norm", "Linf")
    attacks = tuple(entry for i, spec in enumerate(top.tables("attacks"))
                    for entry in _attack_entries(i, spec, default_surrogates, pools, norm, source))
    defenses = tuple(_defense_entry(i, spec, source) for i, spec in enumerate(top.tables("defenses")))
    eps = threat.budgets("eps", norm, ["8/255"])
    suite = Suite(
        name=top.text("name"), description=top.text("description", ""), source=source,
        n_examples=_positive_int(data.get("n_examples", 1000), "data.n_examples"),
        batch_size=_positive_int(data.get("batch_size", 250), "data.batch_size"),
        norm=norm, eps=eps,
        headline_eps=_headline(threat, eps, norm),
        seed=_int(run.get("seed", 0), "run.seed"), device=run.text("device", "auto"),
        train=top.table("train"), models=models, attacks=attacks, defenses=defenses, pools=pools)
    for table in (top, data, threat, run):
        table.reject_unknown()
    for attack in attacks:  # checked here, not after --eps/--defenses overrides, which may take its subset away
        if attack.eps is not None and (not attack.eps or not set(attack.eps) <= set(eps)):
            raise SuiteError(f"{source}: attack {attack.name!r}: eps must be a non-empty subset of threat.eps")
        unknown = set(attack.defenses or ()) - {d.name for d in defenses}
        if attack.defenses is not None and (not attack.defenses or unknown):
            raise SuiteError(f"{source}: attack {attack.name!r}: defenses must be a non-empty list of the suite's "
                             f"defenses{f', unknown: {sorted(unknown)}' if unknown else ''}")
    return _checked(suite)


class _Table:
    """A TOML table that remembers which keys were read, to reject typos."""

    def __init__(self, raw, where: str):
        if not isinstance(raw, dict):
            raise SuiteError(f"{where} must be a table")
        self.raw, self.where, self.read = raw, where, set()

    def get(self, key, default=None):
        self.read.add(key)
        return self.raw.get(key, default)

    def require(self, key):
        if key not in self.raw:
            raise SuiteError(f"{self.where} lacks the key {key!r}")
        return self.get(key)

    def text(self, key, default=None):
        """A string value (``default`` if absent; required if ``default`` is None)."""
        value = self.require(key) if default is None else self.get(key, default)
        if not isinstance(value, str):
            raise SuiteError(f"{self.where}: {key!r} must be a string, got {value!r}")
        return value

    def flag(self, key) -> bool:
        """A true/false value (false if absent)."""
        value = self.get(key, False)
        if not isinstance(value, bool):
            raise SuiteError(f"{self.where}: {key!r} must be true or false, got {value!r}")
        return value

    def names(self, key, default=()) -> tuple[str, ...]:
        """A list of names (``default`` if absent)."""
        value = self.get(key, list(default))
        return _names(value, self.where, key)

    def budgets(self, key, norm: str, default=None) -> tuple[float, ...] | None:
        """A list of perturbation budgets, parsed (``default`` if absent; None if that is None)."""
        value = self.get(key, default)
        if value is None:
            return None
        if not isinstance(value, list):
            raise SuiteError(f"{self.where}: {key} must be a list such as [\"8/255\"], got {value!r}")
        return parse_budgets(value, norm, f"{self.where}: {key}")

    def table(self, key) -> dict:
        """A table value ({} if absent)."""
        value = self.get(key, {})
        if not isinstance(value, dict):
            raise SuiteError(f"{self.where}: {key!r} must be a table, e.g. {key} = {{ steps = 10 }}, got {value!r}")
        return dict(value)

    def tables(self, key) -> list:
        """An array of tables ([] if absent), such as [[attacks]]."""
        value = self.get(key, [])
        if not isinstance(value, list):
            raise SuiteError(f"{self.where}: {key!r} must be an array of tables ([[{key}]]), got {value!r}")
        return value

    def reject_unknown(self):
        unknown = set(self.raw) - self.read
        if unknown:
            raise SuiteError(f"{self.where}: unknown key(s) {', '.join(sorted(unknown))}")


def _model_entry(name: str, spec, source: str) -> ModelEntry:
    table = _Table(spec, f"{source} [models.{name}]")
    method = table.text("method", "") or None
    checkpoint = table.text("checkpoint", "") or None
    entry = ModelEntry(name=name, arch=table.text("arch", "") if method else table.text("arch"),
                       checkpoint=checkpoint, train=table.table("train"),
                       seed=_int(table.get("seed", 0), f"models.{name}.seed"), source=table.text("source", ""),
                       licence=table.text("licence", ""),
                       require_checkpoint=table.flag("require_checkpoint"),
                       method=method, bases=table.names("from"), params=table.table("params"),
                       threat_model=table.text("threat_model", "Linf"))
    table.reject_unknown()
    _check_external(entry, table.where, "threat_model" in table.raw)
    if entry.require_checkpoint and not entry.checkpoint:
        raise SuiteError(f"{table.where}: require_checkpoint needs a checkpoint name")
    if method and (entry.checkpoint or entry.require_checkpoint or entry.arch):
        raise SuiteError(f"{table.where}: a derived model (method = {method!r}) is made from its bases; "
                         "drop arch, checkpoint and require_checkpoint")
    if not method and (entry.bases or entry.params):
        raise SuiteError(f"{table.where}: 'from' and 'params' belong to a derived model; add method = ...")
    return entry


def external_library(arch: str) -> str | None:
    """The library that loads ``arch`` (``"robustbench:<name>"``, ``"timm:<name>"``); None for a zoo architecture."""
    library, colon, _ = arch.partition(":")
    return library if colon and library in EXTERNAL_LIBRARIES else None


def _check_external(entry: ModelEntry, where: str, threat_given: bool) -> None:
    """A ``"<library>:<name>"`` arch names a model and takes none of the zoo's checkpoint and training keys;
    ``threat_model`` belongs to a RobustBench model and names one of its leaderboards."""
    library = external_library(entry.arch)
    if threat_given and library != "robustbench":
        raise SuiteError(f"{where}: threat_model belongs to a RobustBench model (arch = \"robustbench:<name>\")")
    if entry.threat_model not in ROBUSTBENCH_THREATS:
        raise SuiteError(f"{where}: threat_model must be one of {', '.join(ROBUSTBENCH_THREATS)}, "
                         f"got {entry.threat_model!r}")
    if library and not entry.arch.partition(":")[2]:
        raise SuiteError(f"{where}: arch {entry.arch!r} names no model; write {library}:<model name>")
    if library and (entry.checkpoint or entry.require_checkpoint or entry.train):
        raise SuiteError(f"{where}: {library} loads {entry.arch!r} with its own pretrained weights; "
                         "drop checkpoint, require_checkpoint and train")


def _names(value, where: str, key: str = "from") -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SuiteError(f"{where}: {key!r} must be a list of names, got {value!r}")
    return tuple(value)


def _attack_entries(index: int, spec, default_surrogates, pools: dict, norm: str, source: str) -> list[AttackEntry]:
    """The suite's entries for one [[attacks]] table: one, or one per random restart (``<name>#<r>``, with ``restarts``)
    and per surrogate pool it runs on (``<name>@<pool>``)."""
    table = _Table(spec, f"{source} [[attacks]] #{index + 1}")
    on = table.text("on", "surrogates")
    if on not in ATTACK_TARGETS:
        raise SuiteError(f"{table.where}: on must be one of {', '.join(ATTACK_TARGETS)}, got {on!r}")
    for key in ("surrogates", "pools"):
        if on != "surrogates" and key in table.raw:
            raise SuiteError(f"{table.where}: a white-box attack (on = {on!r}) takes no {key}")
    if "surrogates" in table.raw and "pools" in table.raw:
        raise SuiteError(f"{table.where}: give surrogates or pools, not both")
    defenses = table.get("defenses")
    entry = AttackEntry(name=table.text("name"), attack=table.text("attack"), params=table.table("params"),
                        surrogates=table.names("surrogates", default_surrogates) if on == "surrogates" else (),
                        on=on, eps=table.budgets("eps", norm),
                        eot=_positive_int(table.get("eot", 10), f"{table.where} eot"),
                        defenses=None if defenses is None else _names(defenses, table.where, "defenses"))
    chosen = table.names("pools", tuple(pools) if "surrogates" not in table.raw else ())
    restarts = _positive_int(table.get("restarts", 1), f"{table.where} restarts")
    cascade = table.flag("cascade")
    table.reject_unknown()
    if cascade and on == "surrogates":
        raise SuiteError(f"{table.where} ({entry.name}): cascade is for attacks on each defense (on = \"defense\" or "
                         "\"adaptive\"); a transfer set is crafted once for every defense")
    entry = replace(entry, cascade=cascade)
    if on == "adaptive" and entry.params.get("early_stop"):
        raise SuiteError(f"{table.where} ({entry.name}): early_stop judges points on the attacked model, which for "
                         "an adaptive attack is the defense's view, not the defense: run it in full")
    try:
        at_eps(entry.params, 1.0)  # a malformed "eps/..." value stops here, naming the attack
    except SuiteError as error:
        raise SuiteError(f"{table.where} ({entry.name}): {error}") from None
    runs = [replace(entry, family=entry.name)] if restarts == 1 else \
        [replace(entry, name=f"{entry.name}#{r}", family=entry.name, restart=r) for r in range(restarts)]
    if on != "surrogates" or not chosen:
        return runs
    _refuse_unknown(chosen, pools, f"{table.where}: unknown pool(s)", "", f"the suite's [pools]: {', '.join(pools)}")
    return [replace(run, name=f"{run.name}@{pool}", surrogates=pools[pool], pool=pool)
            for run in runs for pool in chosen]


def _defense_entry(index: int, spec, source: str) -> DefenseEntry:
    table = _Table(spec, f"{source} [[defenses]] #{index + 1}")
    table.require("members")
    entry = DefenseEntry(name=table.text("name"), kind=table.text("kind", "single"), members=table.names("members"),
                         params=table.table("params"), certify=table.text("certify", "") or None,
                         group=table.text("group", "") or None)
    table.reject_unknown()
    if entry.certify is not None and entry.certify not in CERTIFIERS:
        raise SuiteError(f"{table.where}: certify must be one of {', '.join(map(repr, CERTIFIERS))}, "
                         f"got {entry.certify!r}")
    if entry.certify is not None and entry.kind != "single":
        raise SuiteError(f"{table.where}: certify needs a defense of kind \"single\" (one plain model), "
                         f"not {entry.kind!r}")
    return entry


def _headline(threat: _Table, eps: tuple[float, ...], norm: str) -> float:
    """threat.headline_eps (one of threat.eps), or the largest eps."""
    value = threat.get("headline_eps")
    if value is None:
        return max(eps) if eps else 0.0
    headline = parse_budgets([value], norm, f"{threat.where}: headline_eps")[0]
    if eps and headline not in eps:
        raise SuiteError(f"{threat.where}: headline_eps {value!r} must be one of eps")
    return headline


def _checked(suite: Suite) -> Suite:
    where = suite.source
    if suite.norm not in ("Linf", "L2"):
        raise SuiteError(f"{where}: threat.norm must be Linf or L2, got {suite.norm!r}")
    if not suite.eps:
        raise SuiteError(f"{where}: threat.eps needs at least one value")
    if not suite.defenses:
        raise SuiteError(f"{where}: no defenses to evaluate")
    for names, what in ((_dupes(a.name for a in suite.attacks), "attack"),
                        (_dupes(d.name for d in suite.defenses), "defense")):
        if names:
            raise SuiteError(f"{where}: {what} names must be unique, repeated: {', '.join(names)}")
    for pool, members in suite.pools.items():
        if not members:
            raise SuiteError(f"{where}: pool {pool!r} has no models")
    if any(a.name.lower() == CLEAN for a in suite.attacks):
        raise SuiteError(f"{where}: the attack name {CLEAN!r} is reserved for the no-attack row")
    for attack in suite.attacks:
        if not attack.whitebox and not attack.surrogates:
            raise SuiteError(f"{where}: attack {attack.name!r} has no surrogates (set surrogates = [...])")

    for name, entry in suite.models.items():
        bad = [b for b in entry.bases if b not in suite.models or suite.models[b].method
               or external_library(suite.models[b].arch)]  # a derived model is saved and reloaded as zoo weights
        if bad:
            raise SuiteError(f"{where}: derived model {name!r} needs 'from' = plain models under [models] (zoo "
                             "models, neither derived nor loaded by robustbench or timm), "
                             f"got {', '.join(map(repr, bad))}")
    for owner, names in [(f"attack {a.name!r}", a.surrogates) for a in suite.attacks] + \
                        [(f"defense {d.name!r}", d.members) for d in suite.defenses]:
        missing = [n for n in names if n not in suite.models]
        if missing:
            raise SuiteError(f"{where}: {owner} uses model(s) {', '.join(missing)} not defined under [models]")
    _check_disjoint(suite)
    return suite


def _lineage(suite: Suite, names) -> set[str]:
    """``names`` and the bases they are derived from (an LGV collection, a fine-tuned or DVERGE ensemble)."""
    return {n for name in names for n in (name, *suite.models[name].bases)}


def _check_disjoint(suite: Suite) -> None:
    """No model (or a model derived from it) is both a surrogate and a target of the same transfer attack."""
    for attack in (a for a in suite.attacks if not a.whitebox):
        surrogates = _lineage(suite, attack.surrogates)
        for defense in (d for d in suite.defenses if attack.runs_on(d.name)):
            shared = sorted(surrogates & _lineage(suite, defense.members))
            if shared:
                raise SuiteError(f"{suite.source}: model(s) {', '.join(shared)} would be both a surrogate of attack "
                                 f"{attack.name!r} and a target in defense {defense.name!r}: a transfer attack "
                                 "must not see its target (take it out of the pool, or name the attack's "
                                 "defenses = [...] without it)")


def _dupes(names) -> list[str]:
    seen, dupes = set(), []
    for name in names:
        if name in seen and name not in dupes:
            dupes.append(name)
        seen.add(name)
    return dupes


def _int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SuiteError(f"{what} must be an integer, got {value!r}")
    return value


def _positive_int(value, what: str) -> int:
    value = _int(value, what)
    if value < 1:
        raise SuiteError(f"{what} must be >= 1, got {value}")
    return value
