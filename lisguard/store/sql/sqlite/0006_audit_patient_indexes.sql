-- A search by patient (a manager's or an inspector's "everything about this patient") matched
-- every event's subject, so it walked the whole log, and it matched subjects that are not
-- patients (a message id, a token id) when a patient key had no assigning authority. The events
-- about a patient are: state changes (the patient is the subject) and events that name it in
-- detail.patient (alerts, snoozes, reads of the patient's data). Two small indexes, over those
-- rows only - the per-message 'message.received' rows are in neither - serve that search.
CREATE INDEX audit_events_state_subject_idx ON audit_events (subject, seq)
    WHERE substr(kind, 1, 6) = 'state.';
CREATE INDEX audit_events_patient_idx ON audit_events (json_extract(detail, '$.patient'), seq)
    WHERE json_extract(detail, '$.patient') IS NOT NULL;
