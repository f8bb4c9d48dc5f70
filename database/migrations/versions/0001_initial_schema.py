"""The initial schema: reference data, orders and their history, executions, positions, daily P&L,
sessions and the recorder's progress (`database.models` as first released).

Revision ID: 0001
Revises:
Create Date: 2026-12-02 13:24:58.928938
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

ORDER_STATE = sa.Enum('pending', 'accepted', 'partially_filled', 'filled', 'canceled', 'expired', 'rejected',
                      name='order_state', native_enum=False, create_constraint=True, length=16)
TRANSITION = sa.Enum('accept', 'reject', 'fill_part', 'fill_all', 'cancel', 'expire', 'replace',
                     name='transition', native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    op.create_table('daily_closes',
    sa.Column('symbol', sa.String(length=16), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('volume', sa.BigInteger(), nullable=False),
    sa.Column('trades', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('symbol', 'day', name=op.f('pk_daily_closes'))
    )
    op.create_table('daily_pnl',
    sa.Column('account', sa.String(length=64), nullable=False),
    sa.Column('symbol', sa.String(length=16), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('trades', sa.BigInteger(), nullable=False),
    sa.Column('bought', sa.BigInteger(), nullable=False),
    sa.Column('sold', sa.BigInteger(), nullable=False),
    sa.Column('bought_notional', sa.BigInteger(), nullable=False),
    sa.Column('sold_notional', sa.BigInteger(), nullable=False),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.Column('basis', sa.BigInteger(), nullable=False),
    sa.Column('cash', sa.BigInteger(), nullable=False),
    sa.Column('realized', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('account', 'symbol', 'day', name=op.f('pk_daily_pnl'))
    )
    op.create_index(op.f('ix_daily_pnl_account_day'), 'daily_pnl', ['account', 'day'], unique=False)

    op.create_table('executions',
    sa.Column('symbol', sa.String(length=16), nullable=False),
    sa.Column('trade_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('time', sa.BigInteger(), nullable=False),
    sa.Column('shard', sa.String(length=32), nullable=False),
    sa.Column('sequence', sa.BigInteger(), nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.Column('aggressor', sa.SmallInteger(), nullable=False),
    sa.Column('buy_order_id', sa.BigInteger(), nullable=False),
    sa.Column('buy_account', sa.String(length=64), nullable=False),
    sa.Column('sell_order_id', sa.BigInteger(), nullable=False),
    sa.Column('sell_account', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('symbol', 'trade_id', name=op.f('pk_executions'))
    )
    op.create_index(op.f('ix_executions_buy_account_time'), 'executions', ['buy_account', 'time'], unique=False)
    op.create_index(op.f('ix_executions_sell_account_time'), 'executions', ['sell_account', 'time'], unique=False)

    op.create_table('instruments',
    sa.Column('symbol', sa.String(length=16), nullable=False),
    sa.Column('tick_size', sa.BigInteger(), nullable=False),
    sa.Column('lot_size', sa.BigInteger(), nullable=False),
    sa.Column('min_quantity', sa.BigInteger(), nullable=False),
    sa.Column('max_quantity', sa.BigInteger(), nullable=False),
    sa.Column('price_band_bps', sa.BigInteger(), nullable=False),
    sa.Column('price_scale', sa.BigInteger(), nullable=False),
    sa.Column('reference_price', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('symbol', name=op.f('pk_instruments'))
    )
    op.create_table('order_events',
    sa.Column('order_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('sequence', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('step', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('shard', sa.String(length=32), nullable=False),
    sa.Column('time', sa.BigInteger(), nullable=False),
    sa.Column('transition', TRANSITION, nullable=False),
    sa.Column('status', ORDER_STATE, nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.Column('filled', sa.BigInteger(), nullable=False),
    sa.Column('leaves', sa.BigInteger(), nullable=False),
    sa.Column('trade_id', sa.BigInteger(), nullable=True),
    sa.Column('reason', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('order_id', 'sequence', 'step', name=op.f('pk_order_events'))
    )
    op.create_table('orders',
    sa.Column('order_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('account', sa.String(length=64), nullable=False),
    sa.Column('symbol', sa.String(length=16), nullable=False),
    sa.Column('side', sa.BigInteger(), nullable=False),
    sa.Column('order_type', sa.BigInteger(), nullable=False),
    sa.Column('time_in_force', sa.BigInteger(), nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.Column('status', ORDER_STATE, nullable=False),
    sa.Column('filled', sa.BigInteger(), nullable=False),
    sa.Column('leaves', sa.BigInteger(), nullable=False),
    sa.Column('notional', sa.BigInteger(), nullable=False),
    sa.Column('created_time', sa.BigInteger(), nullable=False),
    sa.Column('updated_time', sa.BigInteger(), nullable=False),
    sa.Column('shard', sa.String(length=32), nullable=False),
    sa.Column('sequence', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('order_id', name=op.f('pk_orders'))
    )
    op.create_index(op.f('ix_orders_account_created_time'), 'orders', ['account', 'created_time'], unique=False)

    op.create_table('positions',
    sa.Column('account', sa.String(length=64), nullable=False),
    sa.Column('symbol', sa.String(length=16), nullable=False),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.Column('basis', sa.BigInteger(), nullable=False),
    sa.Column('cash', sa.BigInteger(), nullable=False),
    sa.Column('realized', sa.BigInteger(), nullable=False),
    sa.Column('updated_time', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('account', 'symbol', name=op.f('pk_positions'))
    )
    op.create_table('recorder_progress',
    sa.Column('shard', sa.String(length=32), nullable=False),
    sa.Column('sequence', sa.BigInteger(), nullable=False),
    sa.Column('time', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('shard', name=op.f('pk_recorder_progress'))
    )
    op.create_table('reference_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_reference_version_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reference_version'))
    )
    op.create_table('sessions',
    sa.Column('session_id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('trader_id', sa.String(length=64), nullable=False),
    sa.Column('logon_time', sa.BigInteger(), nullable=False),
    sa.Column('logout_time', sa.BigInteger(), nullable=True),
    sa.Column('end_reason', sa.SmallInteger(), nullable=True),
    sa.PrimaryKeyConstraint('session_id', name=op.f('pk_sessions'))
    )
    op.create_index(op.f('ix_sessions_trader_id_logon_time'), 'sessions', ['trader_id', 'logon_time'], unique=False)

    op.create_table('traders',
    sa.Column('trader_id', sa.String(length=64), nullable=False),
    sa.Column('created_time', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('trader_id', name=op.f('pk_traders'))
    )
    op.create_table('api_keys',
    sa.Column('key_id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('trader_id', sa.String(length=64), nullable=False),
    sa.Column('key_hash', sa.String(length=256), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_time', sa.BigInteger(), nullable=False),
    sa.Column('revoked_time', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['trader_id'], ['traders.trader_id'], name=op.f('fk_api_keys_trader_id_traders')),
    sa.PrimaryKeyConstraint('key_id', name=op.f('pk_api_keys'))
    )
    op.create_index(op.f('ix_api_keys_trader_id_active'), 'api_keys', ['trader_id', 'active'], unique=False)

    op.create_table('risk_limits',
    sa.Column('trader_id', sa.String(length=64), nullable=False),
    sa.Column('max_order_quantity', sa.BigInteger(), nullable=False),
    sa.Column('max_notional', sa.BigInteger(), nullable=False),
    sa.Column('max_open_orders', sa.BigInteger(), nullable=False),
    sa.Column('max_messages_per_second', sa.BigInteger(), nullable=False),
    sa.Column('max_queries_per_second', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['trader_id'], ['traders.trader_id'], name=op.f('fk_risk_limits_trader_id_traders')),
    sa.PrimaryKeyConstraint('trader_id', name=op.f('pk_risk_limits'))
    )


def downgrade() -> None:
    op.drop_table('risk_limits')
    op.drop_table('api_keys')
    op.drop_table('traders')
    op.drop_table('sessions')
    op.drop_table('reference_version')
    op.drop_table('recorder_progress')
    op.drop_table('positions')
    op.drop_table('orders')
    op.drop_table('order_events')
    op.drop_table('instruments')
    op.drop_table('executions')
    op.drop_table('daily_pnl')
    op.drop_table('daily_closes')
