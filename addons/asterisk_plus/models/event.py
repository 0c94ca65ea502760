import ast

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError


class Event(models.Model):
    _name = "asterisk_plus.event"
    _description = "Events map"
    _order = "name, sequence, id"

    name = fields.Char(required=True, help="AMI event name, or the FastAGI script name for source FAGI.")
    source = fields.Selection([("AMI", "AMI"), ("FAGI", "FastAGI"), ("ARI", "ARI")], default="AMI", required=True)
    model = fields.Char(required=True)
    method = fields.Char(required=True)
    condition = fields.Text(help="Starlark expression over `event`. Empty means always.")
    delay = fields.Float(default=0, help="Minimum age in seconds before delivery. Not an ordering tool.")
    sequence = fields.Integer(default=10)
    is_enabled = fields.Boolean(default=True)
    update = fields.Selection([("yes", "Yes"), ("no", "No")], default="yes", help="No locks the row against module upgrades.")

    @api.constrains("method", "delay", "condition")
    def _check_row(self):
        for rec in self:
            if rec.method.startswith("_"):
                raise ValidationError(_("The method must be public (no leading underscore)."))
            if rec.delay < 0:
                raise ValidationError(_("The delay cannot be negative."))
            if rec.condition and rec.condition.strip():
                self._check_condition(rec.condition)

    @staticmethod
    def _check_condition(condition):
        """Pre-check with Python's parser; the agent's Starlark compile is final (§3.3)."""
        try:
            tree = ast.parse(condition.strip(), mode="eval")
        except SyntaxError as e:
            raise ValidationError(_("Condition syntax error: %s", e.msg)) from e
        bound = {"event", "True", "False", "None", "int", "str", "len", "float", "bool"}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id not in bound:
                raise ValidationError(_("Unknown name in condition: %s", node.id))
            if isinstance(node, ast.Compare):
                if len(node.ops) > 1:
                    raise ValidationError(_("Chained comparisons are not supported."))
                if isinstance(node.ops[0], (ast.Is, ast.IsNot)):
                    raise ValidationError(_("Use == None instead of is None."))

    def _agent_rows(self):
        rows = self.sudo().search([("is_enabled", "=", True), ("source", "in", ["AMI", "FAGI"])], order="name, sequence, id")
        return [
            {
                "id": r.id,
                "name": r.name,
                "source": r.source,
                "model": r.model,
                "method": r.method,
                "condition": r.condition or "",
                "delay": r.delay,
                "sequence": r.sequence,
            }
            for r in rows
        ]

    def _notify_agents(self):
        servers = self.env["asterisk_plus.server"].sudo().search([("agent_initialized", "=", True)])
        servers._reload_config_after_commit()

    @api.model_create_multi
    def create(self, vals_list):
        recs = super().create(vals_list)
        recs._notify_agents()
        return recs

    def write(self, vals):
        recs = self
        if self.env.context.get("install_mode"):
            # A module upgrade must not overwrite rows the admin locked.
            recs = self.filtered(lambda r: r.update != "no")
        res = super(Event, recs).write(vals)
        recs._notify_agents()
        return res

    def unlink(self):
        res = super().unlink()
        self._notify_agents()
        return res

    @api.model
    def _sync_mixmon_row(self):
        """The MixMonitor row follows the `record_calls` setting."""
        row = self.env.ref("asterisk_plus.var_set_mixmon", raise_if_not_found=False)
        if row:
            row.sudo().is_enabled = bool(self.env["asterisk_plus.settings"].get_settings().record_calls)
