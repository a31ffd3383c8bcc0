"""`stno-convert`: the paper authors' released weights to an STNO checkpoint (`stno.io.paper`)."""

from __future__ import annotations

import argparse
import sys

from stno.errors import STNOError
from stno.io.paper import PRESET, convert_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stno-convert",
        description="Convert the weights of the paper's reference code (hahazh/STVSR-NO) into an "
        "STNO checkpoint for model=stno_paper.",
    )
    parser.add_argument("reference", help="the reference's weights file (.pth)")
    parser.add_argument("out", help="the checkpoint to write (.ckpt)")
    parser.add_argument(
        "--keep-prelu",
        action="store_true",
        help="keep the synthesis head's PReLU instead of folding it (synthesis_prelu: true)",
    )
    args = parser.parse_args(argv)
    try:
        path, conversion = convert_checkpoint(args.reference, args.out, not args.keep_prelu)
    except STNOError as error:
        print(f"stno-convert: error: {error}", file=sys.stderr)
        return 2
    for note in conversion.notes:
        print(note)
    print(f"converted {len(conversion.state_dict)} tensors, none left unplaced")
    print(f"wrote {path}; use it with model={PRESET} ckpt_path={path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
