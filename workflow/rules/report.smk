# Figures (marked for `snakemake --report`) and the PDF report, built from analysis outputs only.


rule figures:
    input:
        unpack(analysis_tables),
    output:
        **figure_outputs(),
    log:
        f"{RESULTS}/logs/figures.log",
    conda:
        ENV
    params:
        ci_level=config["analysis"]["ci_level"],
        compute=config["analysis"]["compute"],
        code=source_hash(*FIGURES_CODE),
    script:
        "../scripts/figures.py"


rule report:
    input:
        unpack(analysis_tables),
        **lr_sweep_table(),
        run_records=rules.curves.output.runs,
        baselines=rules.curves.output.baselines,
        figures=rules.figures.output,
        alt_fits=fit_tables(alt_compute())["fits"],
        job_benchmarks=train_benchmarks,
    output:
        pdf=report(
            f"{RESULTS}/report/report.pdf",
            caption="../report/report.rst",
            category="report",
        ),
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    conda:
        ENV
    params:
        config=config,
        code=source_hash(*REPORT_CODE),
    script:
        "../scripts/report.py"
