"""Fitting networks, one module per type, behind one interface; :data:`FITTINGS` maps DeePMD-kit's type names.

A fitting module defines (``cfg`` is its normalised ``model.fitting_net`` section):

=================================================  =====================================================
``TYPE``, ``ALIASES``                              DeePMD-kit's type name and its aliases
``args()``                                         dargs ``Argument`` list of its input.json keys
``check(cfg, type_map)``                           config rules beyond types; ConfigError naming the key
``init_params(cfg, ntypes, dim_descrpt, seed)``    fresh parameters (NumPy)
``trainable_layers(cfg)``                          one trainable flag per layer
``forward(cfg, params, D, centre_type, fparam, aparam, blocks)``  atomic outputs and a cache
``vjp(cfg, params, ge, cache, blocks)``            ``dE/dD`` from ``dE/de``
``serialize(cfg, params, type_map, dim_descrpt, atom_exclude_types)``  DeePMD-kit's fitting dict
``deserialize(d, ntypes)``                         ``(cfg, params)`` of a serialized fitting dict
=================================================  =====================================================
"""

from ..registry import Registry

INTERFACE = ("TYPE", "ALIASES", "args", "check", "init_params", "trainable_mask", "forward", "vjp",
             "serialize", "deserialize")

FITTINGS = Registry("fitting", {"ener": "dpcore.fitting.energy"}, {}, INTERFACE)


def get_fitting(type_name: str):
    """The module of fitting type ``type_name`` (see the table above)."""
    return FITTINGS.get(type_name)
