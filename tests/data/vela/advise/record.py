"""Re-record the Vela figures tests/test_advise.py reads (see README.md next to this file).

    python tests/data/vela/advise/record.py CASE=ARTIFACT[:acc,acc,...] ...

Each ARTIFACT (an int8 .tflite or a torch run's delegate .tosa) is compiled with the same Vela
flags `condition advise` uses, once per accelerator (default: every MAC size of U85 and U55/U65
that the file's TOSA profile allows), into <here>/<CASE>/<accelerator>/; Vela's log is dropped.
"""
from __future__ import annotations

import sys
from pathlib import Path

from condition.backend.target import Accelerator, Target
from condition.backend.vela_sweep import compile_one

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    for spec in argv:
        case, _, rest = spec.partition("=")
        artifact, _, accs = rest.partition(":")
        names = accs.split(",") if accs else [a.value for a in Accelerator if a.family != "u65"]
        for name in names:
            folder = HERE / case / name
            compile_one(Path(artifact), Target.default_for(name), folder)
            (folder / "vela.log").unlink()
            print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
