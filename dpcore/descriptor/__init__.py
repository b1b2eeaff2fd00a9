"""Descriptors, one module per type, behind one interface; :data:`DESCRIPTORS` maps DeePMD-kit's type names.

A descriptor module defines (``cfg`` is its normalised ``model.descriptor`` section, ``params`` its
parameter dict, ``pairs`` the pair data of :func:`dpcore.pairs.pair_inputs`):

==========================================  ==========================================================
``TYPE``, ``ALIASES``                       DeePMD-kit's type name and its aliases
``args()``                                  dargs ``Argument`` list of its input.json keys (defaults)
``check(cfg, type_map)``                    config rules beyond types; ConfigError naming the key
``validate(cfg, ntypes)``                   checks before arrays are built (``sel`` resolved)
``nlist_sel(cfg)``                          neighbour capacities: per-type ``sel`` list (type-split), or
                                            one int ``nnei`` (mixed types: nearest ``nnei`` of any type)
``MIXED_TYPES``                             False: neighbour list split by type (``sel`` per type);
                                            True: one block, neighbour types as pair data (DPA-1)
``spin_backbone(cfg)``                      descriptor section of a spin model's 2n-type backbone
``dim_out(cfg)``                            descriptor width per atom
``init_params(cfg, ntypes, seed)``          fresh parameters (NumPy)
``trainable_mask(cfg, params)``             tree of bools over ``params``: trained by ``dpcore train``
``stats(model_cfg, params, batches, file)``  parameter updates from data statistics (davg, dstd)
``forward(cfg, params, rij, pairs, blocks)``  ``D`` (nf, nloc, dim_out) and a cache
``vjp(cfg, params, gD, cache, blocks)``     ``dE/dr_ij`` (nf, nloc, nnei, 3) from ``dE/dD``
``serialize(cfg, params, type_map)``        DeePMD-kit's serialized descriptor dict
``deserialize(d, ntypes)``                  ``(cfg, params)`` of a serialized descriptor dict
==========================================  ==========================================================
"""

from ..registry import Registry

INTERFACE = ("TYPE", "ALIASES", "MIXED_TYPES", "args", "check", "validate", "nlist_sel", "spin_backbone", "dim_out",
             "init_params", "trainable_mask", "stats", "forward", "vjp", "serialize", "deserialize")

DESCRIPTORS = Registry("descriptor", {"se_e2_a": "dpcore.descriptor.se_e2_a", "dpa1": "dpcore.descriptor.dpa1",
                                      "se_atten_v2": "dpcore.descriptor.se_atten_v2"},
                       {"se_a": "se_e2_a", "se_atten": "dpa1"}, INTERFACE)


def get_descriptor(type_name: str):
    """The module of descriptor type ``type_name`` (see the table above)."""
    return DESCRIPTORS.get(type_name)
