/** @odoo-module **/
// Call lists that reload themselves when the PBX reports a change (`reload_view`).

import { registry } from "@web/core/registry";
import { useBus, useService } from "@web/core/utils/hooks";
import { listView } from "@web/views/list/list_view";
import { ListController } from "@web/views/list/list_controller";

export class AsteriskCallListController extends ListController {
    setup() {
        super.setup();
        const pbx = useService("asterisk_plus");
        useBus(pbx.bus, "reload", (ev) => {
            if (ev.detail.model === this.props.resModel && !this.model.root.editedRecord) {
                this.model.root.load();
            }
        });
    }
}

registry.category("views").add("asterisk_plus_call_list", {
    ...listView,
    Controller: AsteriskCallListController,
});
