"""Mail: templates and rendering, composing, SMTP sending, IMAP polling, inbound classification."""
