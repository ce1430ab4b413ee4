"""The module named on Dramatiq's command line: `dramatiq workers.entry`.

Importing it sets up the worker process (`workers.boot`): that is what this module is for, and
the only module of the project that does anything when imported.
"""

from workers.boot import boot

actors = boot()
