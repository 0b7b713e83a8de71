-- vakt schema 21: an attempt's timeline line is made from its row, not stored beside it.
--
-- Every finished attempt wrote a timeline row (and its two index entries) that says only
-- what the attempt's row and its action say: which action, which try, the outcome and its
-- detail. With thousands of alerts in one group message that was a sixth of the database's
-- bytes. An attempt whose line says no more now has timeline_line = 1 and the timeline is
-- given the line back when read (its id is the attempt's, its time the attempt's end); a
-- line that says more (a command's output excerpt) is stored as before. Attempts recorded
-- before have 0: their lines are in the timeline table.
ALTER TABLE action_attempts ADD COLUMN timeline_line BIGINT NOT NULL DEFAULT 0;
