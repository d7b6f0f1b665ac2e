-- A short tour of eventstore: append, read, and an optimistic-concurrency
-- conflict.
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
SELECT * FROM eventstore.append('account-42', 'MoneyWithdrawn',
                                '{"amount": 500}', expected_version => 1);
\set VERBOSITY default
SELECT eventstore.stream_version('account-42') AS still_at_version;
