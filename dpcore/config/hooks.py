"""dargs traversal hooks: every problem of an input becomes a :class:`ConfigError` whose message starts
with the location of the key (``model/descriptor/sel: ...``); an unknown key or value gets the closest
valid one *of that section* (:func:`~dpcore.config.errors.suggest`)."""

from __future__ import annotations

from .errors import ConfigError, loc_of, short, suggest
from .schema import NOT_IMPLEMENTED, dargs, schema


def _type_names(arg) -> str:
    names = []
    for d in arg.dtype:
        n = "null" if d is type(None) else (d.__name__ if isinstance(d, type) else str(d))
        names.append(n.replace("typing.", "").replace("Optional[float]", "float|null"))
    return "|".join(sorted(names))


def from_dargs(exc) -> ConfigError:
    """Re-word a dargs ArgumentError with its location first."""
    msg = exc.message or str(exc)
    m = re.match(r"key `([^`]+)` (.*)", msg, re.S)
    path = exc.path.split("/") if exc.path else []
    if m:
        name, rest = m.groups()
        loc = loc_of(path if path and path[-1] == name else [*path, name])
        return ConfigError(f"{loc}: {rest}")
    return ConfigError(f"{loc_of(path)}: {msg}")


def variant_hook(vrnt, argdict: dict, path) -> None:
    flag = vrnt.flag_name
    choices = [*vrnt.choice_dict, *vrnt.choice_alias]
    if flag not in argdict:
        if not vrnt.optional:
            raise ConfigError(f"{loc_of(path, flag)}: required key missing (expected one of {choices})")
        return
    tag = argdict[flag]
    loc = loc_of(path, flag)
    if not isinstance(tag, str):
        raise ConfigError(f"{loc}: expected a string, one of {choices}; got {short(tag)}")
    if tag in choices:
        return
    if tag in NOT_IMPLEMENTED:
        raise ConfigError(
            f"{loc}: '{tag}' is a DeePMD-kit option that dpcore does not implement; "
            f"supported: {choices}"
        )
    raise ConfigError(f"{loc}: unknown {flag} '{tag}'; expected one of {choices}"
                      + suggest(tag, choices))


def alias_hook(arg, argdict: dict, path) -> None:
    given = [k for k in (arg.name, *arg.alias) if k in argdict]
    if len(given) > 1:
        raise ConfigError(
            f"{loc_of(path, arg.name)}: given more than once as {given} (aliases of "
            f"'{arg.name}'); keep one"
        )


def required_hook(arg, argdict: dict, path) -> None:
    if not arg.optional and arg.name not in argdict:
        raise ConfigError(f"{loc_of(path, arg.name)}: required key missing "
                          f"(expected <{_type_names(arg)}>)")


def type_hook(arg, value, path) -> None:
    loc = loc_of(path, arg.name)
    dg = dargs()
    numeric = any(t in (int, float) for t in arg.dtype)
    bad = isinstance(value, bool) and bool not in arg.dtype and numeric
    if not bad and object not in arg.dtype:
        try:
            arg._check_data(value, path)
        except dg.dargs.ArgumentError:
            bad = True
    if bad:
        raise ConfigError(f"{loc}: expected <{_type_names(arg)}>, got {short(value)}")


def strict_hook(arg, value: dict, path) -> None:
    allowed = list(arg.flatten_sub(value, path))
    if not allowed:
        return  # a free-form dict (info, preset_out_bias)
    for key in value:
        if key not in allowed:
            raise ConfigError(
                f"{loc_of(path)}: unknown key '{key}'" + suggest(key, allowed)
            )


def traverse(value: dict, **hooks) -> None:
    dg = dargs()
    try:
        schema().traverse_value(value, path=[], **hooks)
    except dg.dargs.ArgumentError as exc:
        raise from_dargs(exc) from None
