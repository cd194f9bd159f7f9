import sys

from blip_apps.serve.cli import main

sys.exit(main())
