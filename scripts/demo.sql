-- A short tour of eventstore: append, read, an optimistic-concurrency
-- conflict, a projection and a durable subscription.
\set ECHO queries
CREATE EXTENSION eventstore;

-- Open a bank account: expected_version 0 means "the stream must not exist".
SELECT * FROM eventstore.append('account-42', 'AccountOpened',
                                '{"owner": "Ada", "currency": "EUR"}',
                                expected_version => 0);

-- Two more events in one atomic batch, expecting version 1.
SELECT * FROM eventstore.append_events('account-42', '[
    {"type": "MoneyDeposited", "data": {"amount": 100}},
    {"type": "MoneyWithdrawn", "data": {"amount": 30}, "metadata": {"user": "ada"}}
]', expected_version => 1);

-- Read the stream forward, and the newest event backward.
SELECT stream_version, event_type, data, metadata
  FROM eventstore.read_stream('account-42');
SELECT stream_version, event_type, data
  FROM eventstore.read_stream('account-42', max_count => 1, backward => true);
SELECT eventstore.stream_version('account-42');

-- A writer that loaded the stream at version 1 is now stale: the append is
-- refused with SQLSTATE ST001 and nothing is written.
\set VERBOSITY verbose
\set ON_ERROR_STOP 0
SELECT * FROM eventstore.append('account-42', 'MoneyWithdrawn',
                                '{"amount": 500}', expected_version => 1);
\set ON_ERROR_STOP 1
\set VERBOSITY default
SELECT eventstore.stream_version('account-42') AS still_at_version;

-- A read model kept by an inline projection: it changes in the append's
-- own transaction, so it is never behind its events.
CREATE TABLE balances (account text PRIMARY KEY, balance numeric NOT NULL);
CREATE FUNCTION project_balance(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO balances
    VALUES (e.stream_id, CASE e.event_type WHEN 'MoneyDeposited' THEN 1 ELSE -1 END
                         * (e.data->>'amount')::numeric)
    ON CONFLICT (account) DO UPDATE SET balance = balances.balance + excluded.balance;
END $$;
-- replay => false: start with the next event (the default replays the
-- history through the background worker first).
SELECT eventstore.create_projection('balances', 'project_balance(eventstore.event)',
                                    event_types => '{MoneyDeposited,MoneyWithdrawn}',
                                    replay => false);
SELECT * FROM eventstore.append('account-42', 'MoneyDeposited', '{"amount": 250}');
SELECT * FROM balances;
-- Rebuild it from the whole log (the worker replays it), then look again.
BEGIN;
SELECT eventstore.rebuild_projection('balances');
TRUNCATE balances;
COMMIT;
SELECT eventstore.wait_for_projection('balances');
SELECT * FROM balances;
SELECT name, mode, state, lag_events FROM eventstore.projection_status;

-- A durable subscription: consumers fetch leased batches and acknowledge.
SELECT eventstore.create_subscription('audit', stream_prefix => 'account-');
SELECT global_position, stream_id, event_type, attempt
  FROM eventstore.subscription_fetch('audit', 'auditor-1', 10);
SELECT eventstore.subscription_ack('audit', 'auditor-1',
                                   ARRAY(SELECT global_position FROM eventstore.read_stream('account-42')));
SELECT name, position, lag_events, in_flight, parked FROM eventstore.subscription_status;

-- Stream lifecycle.  A retry of an append whose COMMIT acknowledgement was
-- lost returns the original result and writes nothing (every event has an id).
SELECT * FROM eventstore.append('cart-7', 'ItemAdded', '{"sku": "A1"}', expected_version => 0,
                                event_id => '0190f5a2-0000-7000-8000-000000000001');
SELECT * FROM eventstore.append('cart-7', 'ItemAdded', '{"sku": "A1"}', expected_version => 0,
                                event_id => '0190f5a2-0000-7000-8000-000000000001');
-- Keep only the newest two events of a stream: reads honour it at once, the
-- background worker removes the rest.
SELECT * FROM eventstore.append_events('sensor-1',
    '[{"type": "Measured", "data": 1}, {"type": "Measured", "data": 2}, {"type": "Measured", "data": 3}]');
SELECT state, stream_version, max_count FROM eventstore.set_stream_metadata('sensor-1', max_count => 2);
SELECT stream_version, data FROM eventstore.read_stream('sensor-1');
-- Archive a stream out of the hot table; it stays readable; restore it.
SELECT eventstore.archive_stream('account-42');
SELECT state FROM eventstore.stream_info('account-42');
SELECT count(*) AS events_read_from_archive FROM eventstore.read_stream('account-42');
SELECT eventstore.restore_stream('account-42');
-- Soft delete: the stream reads as absent; a new append recreates it and
-- numbering goes on.
SELECT eventstore.delete_stream('cart-7');
SELECT * FROM eventstore.append('cart-7', 'ItemAdded', '{"sku": "B2"}', expected_version => 0);
SELECT stream_version, data FROM eventstore.read_stream('cart-7');
