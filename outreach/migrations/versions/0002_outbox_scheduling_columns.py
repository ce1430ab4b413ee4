"""outbox scheduling columns

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 14:27:17.654834
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_sent_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('day', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('day_count', sa.Integer(), nullable=False, server_default='0'))

    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('not_before', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('saved_to_sent', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index('ix_message_mailbox_sent', ['mailbox_id', 'sent_at'], unique=False)
        batch_op.create_index('ix_message_outbox', ['status', 'not_before'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index('ix_message_outbox')
        batch_op.drop_index('ix_message_mailbox_sent')
        batch_op.drop_column('saved_to_sent')
        batch_op.drop_column('attempts')
        batch_op.drop_column('enqueued_at')
        batch_op.drop_column('not_before')

    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.drop_column('day_count')
        batch_op.drop_column('day')
        batch_op.drop_column('last_sent_at')

