/** @odoo-module **/
// Live PBX events for the web client (CONTRACT §9.6): incoming-call popups and
// other toasts (`asterisk_plus_notify`), auto-open of the caller's record
// (`open_record`) and live reload of call lists (`reload_view`).

import { registry } from "@web/core/registry";
import { _t } from "@web/core/l10n/translation";
import { EventBus } from "@odoo/owl";

function isEditingRecord() {
    // The form's save/discard indicator is visible only while a record has unsaved changes.
    return Boolean(document.querySelector(".o_form_status_indicator_buttons:not(.invisible)"));
}

export const pbxService = {
    dependencies: ["bus_service", "notification", "action"],

    start(env, { bus_service, notification, action }) {
        const bus = new EventBus();

        function openForm(resModel, resId) {
            return action.doAction({
                type: "ir.actions.act_window",
                res_model: resModel,
                res_id: resId,
                views: [[false, "form"]],
                target: "current",
            });
        }

        function onNotify(payload) {
            const buttons = [];
            if (payload.partner_id) {
                buttons.push({
                    name: payload.partner_name || _t("Open contact"),
                    icon: "fa-user",
                    primary: true,
                    onClick: () => openForm("res.partner", payload.partner_id),
                });
            }
            if (payload.ref_model && payload.ref_id) {
                buttons.push({
                    name: payload.ref_name || _t("Open reference"),
                    icon: "fa-external-link",
                    onClick: () => openForm(payload.ref_model, payload.ref_id),
                });
            }
            if (payload.call_id) {
                buttons.push({
                    name: _t("Call"),
                    icon: "fa-phone",
                    onClick: () => openForm("asterisk_plus.call", payload.call_id),
                });
            }
            notification.add(payload.message || "", {
                title: payload.title || _t("PBX"),
                type: payload.warning ? "danger" : "info",
                sticky: Boolean(payload.sticky),
                buttons,
            });
        }

        function onOpenRecord(payload) {
            if (!payload.model || !payload.res_id || isEditingRecord()) {
                return;
            }
            openForm(payload.model, payload.res_id);
        }

        let pending = new Set();
        let timer = null;
        function onReloadView(payload) {
            // Several channel events arrive per call: reload once per burst.
            pending.add(payload.model);
            clearTimeout(timer);
            timer = setTimeout(() => {
                const models = pending;
                pending = new Set();
                for (const model of models) {
                    bus.trigger("reload", { model });
                }
            }, 300);
        }

        bus_service.subscribe("asterisk_plus_notify", onNotify);
        bus_service.subscribe("open_record", onOpenRecord);
        bus_service.subscribe("reload_view", onReloadView);

        // The handlers are exposed for tours: Odoo 17 disables the websocket in test mode.
        return { bus, onNotify, onOpenRecord, onReloadView };
    },
};

registry.category("services").add("asterisk_plus", pbxService);
