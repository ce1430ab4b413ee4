"""The module named on Dramatiq's command line: `dramatiq workers.entry`.

Importing it sets up the worker process (`workers.boot.boot`); that is all it is for. Code that
wants the pieces without a set-up imports `workers.actors` and `workers.broker`.
"""

from workers.boot import boot

actors = boot()
