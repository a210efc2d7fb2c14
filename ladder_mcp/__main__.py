import sys

from ladder_mcp.cli import main

sys.exit(main())
