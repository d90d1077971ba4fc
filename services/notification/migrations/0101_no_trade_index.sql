-- Notifications are read by recipient (the pull feed) and by id (dedup); nothing reads them by trade.
-- The index cost a write per notification, ten per settled trade.
DROP INDEX notifications_trade;
