from odoo import api, fields, models


class ResUsers(models.Model):
    _inherit = "res.users"

    asterisk_users = fields.One2many("asterisk_plus.user", "user", string="PBX users")
    asterisk_server = fields.Many2one("asterisk_plus.server", compute="_compute_asterisk_server", string="PBX server")

    @api.depends("asterisk_users")
    def _compute_asterisk_server(self):
        for user in self:
            user.asterisk_server = user.sudo().asterisk_users[:1].server
