"""Small matplotlib helpers shared by the reports."""


def plain_tick_labels(ax):
    """Tick labels as plain numbers ("30", not "3 x 10^1") on ax's y axis,
    major and minor: log-scale error axes read better so."""
    from matplotlib.ticker import FuncFormatter
    plain = FuncFormatter(lambda value, _: "%g" % value)
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
