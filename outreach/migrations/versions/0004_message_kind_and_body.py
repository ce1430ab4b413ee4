"""message kind and body

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 17:11:04.074639
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op



revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='sequence', nullable=False))
        batch_op.add_column(sa.Column('body', sa.Text(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_column('body')
        batch_op.drop_column('kind')

