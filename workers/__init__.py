"""Dramatiq workers: the broker set-up and thin actors that call into outreach.

Run them with `dramatiq workers.entry` (OUTREACH_BROKER_URL and OUTREACH_WORKSPACE set),
beside one or more `outreach scheduler` processes. `outreach run` runs both in one process.
"""
