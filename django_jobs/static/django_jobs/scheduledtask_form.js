'use strict';
// The scheduled task form shows only the fields of the chosen schedule type. Without
// JavaScript every field shows; the fields of the other types are cleared when it is saved.
{
    const fieldsByType = {
        interval: ['interval_seconds', 'run_immediately'],
        cron: ['cron_expression', 'timezone'],
        once: ['run_at'],
    };
    const all = [...new Set(Object.values(fieldsByType).flat())];

    function showFieldsOf(type) {
        const shown = fieldsByType[type] || all;
        for (const name of all) {
            const row = document.querySelector('.form-row.field-' + name);
            if (row) {
                row.hidden = !shown.includes(name);
            }
        }
    }

    window.addEventListener('load', function() {
        const select = document.getElementById('id_schedule_type');
        if (select) {
            showFieldsOf(select.value);
            select.addEventListener('change', () => showFieldsOf(select.value));
        }
    });
}
