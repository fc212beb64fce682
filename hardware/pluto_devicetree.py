"""The ``adi,*`` device-tree properties of a stock Pluto's ``ad9361-phy``.

The driver registers one debugfs file per parsed device-tree property
(``ad9361_of_get_u32`` / ``ad9361_of_get_bool``), so a real Pluto lists these as
``ad9361-phy`` debug attributes, in this order, with these values (stock Rev.C
device tree, firmware v0.3x). Reads print ``%u``; writes take ``sscanf("%i")`` and
store the value (booleans as 0/1), without re-running the set-up: the driver's
``ad9361_debugfs_write`` does the same, ``initialize`` applies them.
"""

from __future__ import annotations

_TABLE = """
adi,bb-clk-change-dig-tune-enable=0 adi,axi-half-dac-rate-enable=0 adi,txmon-2-lo-cm=48
adi,txmon-1-lo-cm=48 adi,txmon-2-front-end-gain=2 adi,txmon-1-front-end-gain=2
adi,txmon-duration=8192 adi,txmon-delay=511 adi,txmon-one-shot-mode-enable=0
adi,txmon-dc-tracking-enable=0 adi,txmon-high-gain=24 adi,txmon-low-gain=0
adi,txmon-low-high-thresh=37000 adi,gpo3-tx-delay-us=0 adi,gpo3-rx-delay-us=0
adi,gpo2-tx-delay-us=0 adi,gpo2-rx-delay-us=0 adi,gpo1-tx-delay-us=0 adi,gpo1-rx-delay-us=0
adi,gpo0-tx-delay-us=0 adi,gpo0-rx-delay-us=0 adi,gpo3-slave-tx-enable=0
adi,gpo3-slave-rx-enable=0 adi,gpo2-slave-tx-enable=0 adi,gpo2-slave-rx-enable=0
adi,gpo1-slave-tx-enable=0 adi,gpo1-slave-rx-enable=0 adi,gpo0-slave-tx-enable=0
adi,gpo0-slave-rx-enable=0 adi,gpo3-inactive-state-high-enable=0
adi,gpo2-inactive-state-high-enable=0 adi,gpo1-inactive-state-high-enable=0
adi,gpo0-inactive-state-high-enable=0 adi,gpo-manual-mode-enable-mask=0
adi,gpo-manual-mode-enable=0 adi,aux-dac2-tx-delay-us=0 adi,aux-dac2-rx-delay-us=0
adi,aux-dac2-active-in-alert-enable=0 adi,aux-dac2-active-in-tx-enable=0
adi,aux-dac2-active-in-rx-enable=0 adi,aux-dac2-default-value-mV=0
adi,aux-dac1-tx-delay-us=0 adi,aux-dac1-rx-delay-us=0 adi,aux-dac1-active-in-alert-enable=0
adi,aux-dac1-active-in-tx-enable=0 adi,aux-dac1-active-in-rx-enable=0
adi,aux-dac1-default-value-mV=0 adi,aux-dac-manual-mode-enable=1 adi,aux-adc-decimation=256
adi,aux-adc-rate=40000000 adi,temp-sense-decimation=256
adi,temp-sense-periodic-measurement-enable=1 adi,temp-sense-offset-signed=206
adi,temp-sense-measurement-interval-ms=1000 adi,elna-gaintable-all-index-enable=0
adi,elna-rx2-gpo1-control-enable=0 adi,elna-rx1-gpo0-control-enable=0
adi,elna-bypass-loss-mdB=0 adi,elna-gain-mdB=0 adi,elna-settling-delay-ns=0
adi,ctrl-outs-enable-mask=255 adi,ctrl-outs-index=0 adi,rssi-duration=1000 adi,rssi-wait=1
adi,rssi-delay=1 adi,rssi-unit-is-rx-samples-enable=0 adi,rssi-restart-mode=3
adi,fagc-adc-large-overload-inc-steps=2 adi,fagc-power-measurement-duration-in-state5=64
adi,fagc-rst-gla-if-en-agc-pulled-high-mode=0 adi,fagc-rst-gla-en-agc-pulled-high-enable=0
adi,fagc-rst-gla-large-lmt-overload-enable=1 adi,fagc-rst-gla-large-adc-overload-enable=1
adi,fagc-energy-lost-stronger-sig-gain-lock-exit-cnt=8
adi,fagc-rst-gla-engergy-lost-sig-thresh-below-ll=10
adi,fagc-rst-gla-engergy-lost-goto-optim-gain-enable=1
adi,fagc-rst-gla-engergy-lost-sig-thresh-exceeded-enable=1
adi,fagc-rst-gla-stronger-sig-thresh-above-ll=10 adi,fagc-optimized-gain-offset=5
adi,fagc-rst-gla-stronger-sig-thresh-exceeded-enable=1
adi,fagc-use-last-lock-level-for-set-gain-enable=1
adi,fagc-gain-index-type-after-exit-rx-mode=0
adi,fagc-gain-increase-after-gain-lock-enable=0 adi,fagc-final-overrange-count=3
adi,fagc-lmt-final-settling-steps=1 adi,fagc-lpf-final-settling-steps=1
adi,fagc-lock-level-gain-increase-upper-limit=5
adi,fagc-lock-level-lmt-gain-increase-enable=1 adi,fagc-lp-thresh-increment-steps=1
adi,fagc-lp-thresh-increment-time=5 adi,fagc-allow-agc-gain-increase-enable=0
adi,fagc-state-wait-time-ns=260 adi,fagc-dec-pow-measurement-duration=64
adi,agc-immed-gain-change-if-large-lmt-overload-enable=0
adi,agc-immed-gain-change-if-large-adc-overload-enable=0
adi,agc-gain-update-interval-us=1000 adi,agc-sync-for-gain-counter-enable=0
adi,agc-dig-gain-step-size=4 adi,agc-dig-saturation-exceed-counter=3
adi,agc-lmt-overload-large-inc-steps=2 adi,agc-lmt-overload-small-exceed-counter=10
adi,agc-lmt-overload-large-exceed-counter=10
adi,agc-adc-lmt-small-overload-prevent-gain-inc-enable=0
adi,agc-adc-large-overload-inc-steps=2 adi,agc-adc-large-overload-exceed-counter=10
adi,agc-adc-small-overload-exceed-counter=10 adi,agc-outer-thresh-low-inc-steps=2
adi,agc-outer-thresh-low=18 adi,agc-inner-thresh-low-inc-steps=1 adi,agc-inner-thresh-low=12
adi,agc-inner-thresh-high-dec-steps=1 adi,agc-inner-thresh-high=10
adi,agc-outer-thresh-high-dec-steps=2 adi,agc-outer-thresh-high=5
adi,agc-attack-delay-extra-margin-us=1 adi,mgc-split-table-ctrl-inp-gain-mode=0
adi,mgc-dec-gain-step=2 adi,mgc-inc-gain-step=2 adi,mgc-rx2-ctrl-inp-enable=0
adi,mgc-rx1-ctrl-inp-enable=0 adi,gc-use-rx-fir-out-for-dec-pwr-meas-enable=0
adi,gc-max-dig-gain=15 adi,gc-dig-gain-enable=0 adi,gc-low-power-thresh=24
adi,gc-dec-pow-measurement-duration=8192 adi,gc-lmt-overload-low-thresh=704
adi,gc-lmt-overload-high-thresh=800 adi,gc-adc-large-overload-thresh=58
adi,gc-adc-small-overload-thresh=47 adi,gc-adc-ovr-sample-size=4 adi,gc-rx2-mode=2
adi,gc-rx1-mode=2 adi,update-tx-gain-in-alert-enable=0 adi,tx-attenuation-mdB=10000
adi,rf-tx-bandwidth-hz=18000000 adi,rf-rx-bandwidth-hz=18000000
adi,qec-tracking-slow-mode-enable=0 adi,dc-offset-count-low-range=50
adi,dc-offset-count-high-range=40 adi,dc-offset-attenuation-low-range=5
adi,dc-offset-attenuation-high-range=6 adi,dc-offset-tracking-update-event-mask=5
adi,clk-output-mode-select=0 adi,tx-lo-powerdown-managed-enable=1
adi,trx-synthesizer-target-fref-overwrite-hz=80008000 adi,rx1-rx2-phase-inversion-enable=0
adi,tx-rf-port-input-select-lock-enable=1 adi,rx-rf-port-input-select-lock-enable=1
adi,tx-rf-port-input-select=0 adi,rx-rf-port-input-select=0
adi,split-gain-table-mode-enable=0 adi,1rx-1tx-mode-use-tx-num=1
adi,1rx-1tx-mode-use-rx-num=1 adi,2rx-2tx-mode-enable=0
adi,digital-interface-tune-fir-disable=1 adi,digital-interface-tune-skip-mode=0
adi,tx-fastlock-pincontrol-enable=0 adi,rx-fastlock-pincontrol-enable=0
adi,rx-fastlock-delay-ns=0 adi,tx-fastlock-delay-ns=0 adi,tdd-skip-vco-cal-enable=0
adi,tdd-use-dual-synth-mode-enable=0 adi,debug-mode-enable=0
adi,ensm-enable-txnrx-control-enable=0 adi,ensm-enable-pin-pulse-mode-enable=0
adi,frequency-division-duplex-independent-mode-enable=0
adi,frequency-division-duplex-mode-enable=1
"""

#: (property name, value) in the order the driver registers them.
DT_PROPERTIES: tuple[tuple[str, int], ...] = tuple(
    (name, int(value)) for name, value in (item.split("=") for item in _TABLE.split())
)
