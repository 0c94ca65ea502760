/** @odoo-module **/
// Phone field with a click-to-dial button: rings the user's PBX phone, then the
// PBX dials the number (asterisk_plus.server.originate_call, CONTRACT §9.3).

import { registry } from "@web/core/registry";
import { _t } from "@web/core/l10n/translation";
import { useService } from "@web/core/utils/hooks";
import { PhoneField, phoneField } from "@web/views/fields/phone/phone_field";
import { onWillStart, useState } from "@odoo/owl";

export class AsteriskPhoneField extends PhoneField {
    static template = "asterisk_plus.PhoneField";

    setup() {
        super.setup();
        this.orm = useService("orm");
        this.notification = useService("notification");
        const user = useService("user");
        this.state = useState({ canDial: false, dialing: false });
        onWillStart(async () => {
            this.state.canDial = await user.hasGroup("asterisk_plus.group_asterisk_user");
        });
    }

    get number() {
        return this.props.record.data[this.props.name] || "";
    }

    async onClickDial(ev) {
        // In a list, the click must not open the row.
        ev.preventDefault();
        ev.stopPropagation();
        if (!this.number || this.state.dialing) {
            return;
        }
        const record = this.props.record;
        this.state.dialing = true;
        try {
            await this.orm.call("asterisk_plus.server", "originate_call", [
                this.number,
                record.resId ? record.resModel : false,
                record.resId || false,
            ]);
            this.notification.add(_t("Your phone rings first, then %s is dialled.", this.number), {
                title: _t("Calling"),
                type: "info",
            });
        } finally {
            this.state.dialing = false;
        }
    }
}

export const asteriskPhoneField = {
    ...phoneField,
    component: AsteriskPhoneField,
    displayName: _t("Phone (click to dial)"),
};

registry.category("fields").add("asterisk_plus_phone", asteriskPhoneField);
