"""Pipeline: regenerate the bundled sample studies (``python pipelines/make_sample_data.py [OUT]``).

Composed only of library calls; see ``sample_data/README.md`` for what it writes.
"""

import sys

from medcam.synthetic.sample import main

if __name__ == "__main__":
    main(sys.argv[1:])
