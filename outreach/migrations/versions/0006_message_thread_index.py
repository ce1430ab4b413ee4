"""message.thread_id, indexed: a batch being sent looks up the messages already sent in its threads

Without it the look-up reads every sent message, so sending slowed down as the outbox grew.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 19:05:00
"""

from __future__ import annotations

from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_thread_id'), ['thread_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_thread_id'))
