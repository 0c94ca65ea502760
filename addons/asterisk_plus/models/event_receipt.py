from datetime import timedelta

from odoo import api, fields, models

RECEIPT_KEEP_HOURS = 72  # longer than the agent spool's 24 h, so any retry still finds its receipt


class EventReceipt(models.Model):
    _name = "asterisk_plus.event_receipt"
    _description = "Delivered agent event (de-duplication)"
    _log_access = True

    key = fields.Char(required=True, readonly=True, help="AgentEventId")
    target = fields.Char(required=True, readonly=True, help="model.method")

    _sql_constraints = [
        ("key_target_uniq", "unique(key, target)", "This event was already delivered to this handler."),
    ]

    @api.autovacuum
    def _gc_receipts(self):
        limit = fields.Datetime.now() - timedelta(hours=RECEIPT_KEEP_HOURS)
        self.env.cr.execute("DELETE FROM asterisk_plus_event_receipt WHERE create_date < %s", (limit,))
