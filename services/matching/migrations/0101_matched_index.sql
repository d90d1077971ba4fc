-- Trades waiting on settlement are few; the stuck-work gauge counts them every 15 s without
-- reading the whole table.
CREATE INDEX trades_matched ON trades (trade_id) WHERE status = 'MATCHED';
