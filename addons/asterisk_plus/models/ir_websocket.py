from odoo import models


class IrWebsocket(models.AbstractModel):
    _inherit = "ir.websocket"

    def _build_bus_channel_list(self, channels):
        channels = super()._build_bus_channel_list(channels)
        if self.env.uid and self.env.user.has_group("asterisk_plus.group_asterisk_user"):
            channels.append("asterisk_plus_actions")
        return channels
