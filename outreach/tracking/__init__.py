"""Tracking: the CRM record, KPIs, and the unsubscribe links."""
