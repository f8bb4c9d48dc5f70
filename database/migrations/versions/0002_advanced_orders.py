"""Advanced orders: each instrument's enabled kinds of order, iceberg and stop limits; each trader's
account and default self-trade prevention mode; the order history's new transitions (a stop
triggered, a self-trade prevention decrement).

Existing instruments get every kind of order enabled and no iceberg or stop limit (what they
allowed before: nothing, as those orders did not exist, and nothing refused them); existing
traders trade for an account of their own (named like them) with self-trade prevention off.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-09 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

ALL_KINDS = "limit,market,stop,stop-limit,iceberg,post-only,gtd"
OLD_TRANSITIONS = ('accept', 'reject', 'fill_part', 'fill_all', 'cancel', 'expire', 'replace')
NEW_TRANSITIONS = OLD_TRANSITIONS + ('trigger', 'decrement')


def upgrade() -> None:
    with op.batch_alter_table('instruments') as batch:
        batch.add_column(sa.Column('order_types', sa.String(length=64), nullable=False, server_default=ALL_KINDS))
        batch.add_column(sa.Column('max_iceberg_slices', sa.BigInteger(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('max_stop_distance_bps', sa.BigInteger(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('allow_marketable_stops', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table('traders') as batch:
        batch.add_column(sa.Column('account', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('stp_default', sa.String(length=16), nullable=False, server_default='none'))
    op.execute("UPDATE traders SET account = trader_id")
    # The defaults only filled the existing rows: the exchange always writes every column.
    with op.batch_alter_table('instruments') as batch:
        for column in ('order_types', 'max_iceberg_slices', 'max_stop_distance_bps', 'allow_marketable_stops'):
            batch.alter_column(column, server_default=None)
    with op.batch_alter_table('traders') as batch:
        batch.alter_column('account', existing_type=sa.String(length=64), nullable=False)
        batch.alter_column('stp_default', server_default=None)
    _transitions(OLD_TRANSITIONS, NEW_TRANSITIONS)


def downgrade() -> None:
    op.execute("DELETE FROM order_events WHERE transition IN ('trigger', 'decrement')")
    _transitions(NEW_TRANSITIONS, OLD_TRANSITIONS)
    with op.batch_alter_table('traders') as batch:
        batch.drop_column('stp_default')
        batch.drop_column('account')
    with op.batch_alter_table('instruments') as batch:
        for column in ('allow_marketable_stops', 'max_stop_distance_bps', 'max_iceberg_slices', 'order_types'):
            batch.drop_column(column)


def _transitions(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    """order_events.transition takes the values ``new`` instead of ``old``: its CHECK constraint
    (``ck_order_events_transition``, made by 0001's non-native Enum) replaced."""
    condition = f"transition IN ({', '.join(repr(value) for value in new)})"
    with op.batch_alter_table('order_events') as batch:
        batch.drop_constraint(op.f('ck_order_events_transition'), type_='check')
    with op.batch_alter_table('order_events') as batch:
        batch.create_check_constraint(op.f('ck_order_events_transition'), condition)
