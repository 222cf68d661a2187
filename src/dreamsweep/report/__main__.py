"""`python -m dreamsweep.report <folder>`: the same as `dreamsweep report <folder>`."""

import sys

from dreamsweep.cli import main

sys.exit(main(["report", *sys.argv[1:]]))
