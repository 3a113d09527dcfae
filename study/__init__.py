"""Study design: a config's validation and resolution into runs (`study.config`), and planning a study from a
time budget (`study.plan`, `archscale plan`: `study.plan_cli`). It decides what runs; `training/` runs it and
never imports this package, so editing the design retrains nothing that its params do not change.
"""
