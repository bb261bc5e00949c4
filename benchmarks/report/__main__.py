import sys

from benchmarks.report.build import main

sys.exit(main())
