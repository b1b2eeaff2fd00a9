"""``dpcore neighbor-stat``: minimum pair distance and maximum neighbour counts of training data."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("-s", "--system", required=True, nargs="+", help="system folders (searched recursively) or .h5 files")
    p.add_argument("-r", "--rcut", type=float, required=True, help="cutoff radius, Å")
    p.add_argument("-t", "--type-map", nargs="+", required=True, help="element names, e.g. O H")
    p.add_argument("--factor", type=float, default=1.1, help="safety factor for the suggested sel (default 1.1)")
    p.add_argument("--mixed-type", action="store_true",
                   help="count neighbours of every type together (the one sel of DPA-1 / se_atten), as DeePMD-kit's")


def main(args) -> int:
    from ..data import load_systems
    from ..stat.neighbor import auto_sel, data_neighbor_stat

    if not args.rcut > 0:
        raise ValueError(f"--rcut must be > 0 Å, got {args.rcut}")
    systems = load_systems(args.system, type_map=args.type_map)
    min_dist, max_nbor = data_neighbor_stat(systems, args.rcut, len(args.type_map), mixed_types=args.mixed_type)
    nframes = sum(s.nframes for s in systems)
    print(f"systems: {len(systems)}, frames: {nframes}, rcut: {args.rcut} Å, type_map: {args.type_map}")
    print(f"min_nbor_dist: {min_dist:.6f}")
    print(f"max_nbor_size: {max_nbor.tolist()}")
    sel = auto_sel(max_nbor, args.factor)
    print(f"suggested sel (auto:{args.factor}): {sel[0] if args.mixed_type else sel}")
    return 0
