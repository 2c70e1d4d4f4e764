using Spectre.Console;
using Updp.Pruning;
using Updp.Training;

namespace Updp.Cli;

/// <summary>Reports synchronously on the calling thread (System.Progress posts to the thread pool, out of order).</summary>
internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}

/// <summary>Draws a training run: one bar over all steps with loss, accuracy, images/s and ETA, plus a line per epoch.</summary>
internal static class ConsoleProgress
{
    public static T Train<T>(string title, Func<IProgress<TrainProgress>, Action<EpochResult>, T> run)
    {
        if (!AnsiConsole.Profile.Capabilities.Interactive)
        {
            return TrainPlain(title, run);
        }
        T result = default!;
        Bars().Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), maxValue: 1);
                var lastDraw = DateTime.MinValue;
                var progress = new SyncProgress<TrainProgress>(p =>
                {
                    task.MaxValue = (double)p.Epochs * p.StepsPerEpoch;
                    task.Value = ((double)(p.Epoch - 1) * p.StepsPerEpoch) + p.Step;
                    if ((DateTime.UtcNow - lastDraw).TotalMilliseconds > 250 || p.Step == p.StepsPerEpoch)
                    {
                        lastDraw = DateTime.UtcNow;
                        task.Description = Markup.Escape(
                            $"{title} epoch {p.Epoch}/{p.Epochs} loss {p.Loss:F3} acc {p.Accuracy:P1} {p.ImagesPerSecond:F0} img/s lr {p.LearningRate:G3} ETA {p.Eta:hh\\:mm\\:ss}");
                    }
                });
                result = run(progress, PrintEpoch);
                task.Value = task.MaxValue;
            });
        return result;
    }

    /// <summary>Logs and pipes get a status line every 30 s instead of a redrawn bar.</summary>
    private static T TrainPlain<T>(string title, Func<IProgress<TrainProgress>, Action<EpochResult>, T> run)
    {
        var due = StatusLineDue();
        var progress = new SyncProgress<TrainProgress>(p =>
        {
            if (due())
            {
                Console.WriteLine($"{title} epoch {p.Epoch}/{p.Epochs} step {p.Step}/{p.StepsPerEpoch} loss {p.Loss:F3} acc {p.Accuracy:P1} " +
                    $"{p.ImagesPerSecond:F0} img/s ETA {p.Eta:hh\\:mm\\:ss}");
            }
        });
        return run(progress, PrintEpoch);
    }

    /// <summary>Draws a subnet search: one bar over the subsets to score, with the last and best scores.</summary>
    public static T Search<T>(Func<IProgress<SearchProgress>, T> run)
    {
        if (!AnsiConsole.Profile.Capabilities.Interactive)
        {
            var due = StatusLineDue();
            return run(new SyncProgress<SearchProgress>(p =>
            {
                if (due())
                {
                    Console.WriteLine(SearchLine(p));
                }
            }));
        }
        T result = default!;
        Bars().Start(ctx =>
            {
                var task = ctx.AddTask("search", maxValue: 1);
                result = run(new SyncProgress<SearchProgress>(p =>
                {
                    task.MaxValue = p.Budget;
                    task.Value = p.Scored;
                    task.Description = Markup.Escape(SearchLine(p));
                }));
                task.Value = task.MaxValue;
            });
        return result;
    }

    /// <summary>
    /// Draws <c>updp prune</c>: one bar per stage (training steps, scored subsets), a line when a stage
    /// starts, is skipped (finished in an earlier run) or finishes, and a line per epoch.
    /// </summary>
    public static T Prune<T>(Func<IProgress<PruneProgress>, T> run)
    {
        static string Name(PruneStage stage) => stage.ToString().ToLowerInvariant();
        static void Line(PruneProgress p)
        {
            switch (p.Event)
            {
                case PruneEvent.Started or PruneEvent.Finished:
                    AnsiConsole.MarkupLine(Markup.Escape($"{Name(p.Stage)}: {(p.Event == PruneEvent.Started ? "started" : "done")}, {p.Message}"));
                    break;
                case PruneEvent.Skipped:
                    AnsiConsole.MarkupLine(Markup.Escape($"{Name(p.Stage)}: skipped (finished earlier), {p.Message}"));
                    break;
                case PruneEvent.Epoch:
                    PrintEpoch(p.Epoch!);
                    break;
                default:
                    break;
            }
        }
        if (!AnsiConsole.Profile.Capabilities.Interactive)
        {
            var due = StatusLineDue();
            return run(new SyncProgress<PruneProgress>(p =>
            {
                Line(p);
                if (p.Event == PruneEvent.Step && due())
                {
                    Console.WriteLine(p.Train is { } t
                        ? $"{Name(p.Stage)} epoch {t.Epoch}/{t.Epochs} step {t.Step}/{t.StepsPerEpoch} loss {t.Loss:F3} acc {t.Accuracy:P1} ETA {t.Eta:hh\\:mm\\:ss}"
                        : SearchLine(p.Search!));
                }
            }));
        }
        T result = default!;
        Bars().Start(ctx =>
            {
                var tasks = Enum.GetValues<PruneStage>().ToDictionary(s => s, s => ctx.AddTask(Name(s), autoStart: false, maxValue: 1));
                var lastDraw = DateTime.MinValue;
                result = run(new SyncProgress<PruneProgress>(p =>
                {
                    Line(p);
                    var task = tasks[p.Stage];
                    switch (p.Event)
                    {
                        case PruneEvent.Started:
                            task.StartTask();
                            break;
                        case PruneEvent.Skipped or PruneEvent.Finished:
                            task.Description = Markup.Escape($"{Name(p.Stage)}: {(p.Event == PruneEvent.Skipped ? "skipped" : "done")}");
                            task.Value = task.MaxValue;
                            task.StopTask();
                            break;
                        case PruneEvent.Step when p.Train is { } t:
                            task.MaxValue = (double)t.Epochs * t.StepsPerEpoch;
                            task.Value = ((double)(t.Epoch - 1) * t.StepsPerEpoch) + t.Step;
                            if ((DateTime.UtcNow - lastDraw).TotalMilliseconds > 250)
                            {
                                lastDraw = DateTime.UtcNow;
                                task.Description = Markup.Escape($"{Name(p.Stage)} epoch {t.Epoch}/{t.Epochs} loss {t.Loss:F3} acc {t.Accuracy:P1} {t.ImagesPerSecond:F0} img/s");
                            }
                            break;
                        case PruneEvent.Step when p.Search is { } s:
                            task.MaxValue = s.Budget;
                            task.Value = s.Scored;
                            task.Description = Markup.Escape(SearchLine(s));
                            break;
                        default:
                            break;
                    }
                }));
            });
        return result;
    }

    internal static string SearchLine(SearchProgress p) => p.Dropped is null
        ? $"search {p.Scored}/{p.Budget} subsets: [{string.Join(",", p.Blocks)}] {p.ValTop1:P1}, best {p.BestValTop1:P1}"
        // A mixed search: "d" marks a dropped block, as in search.json's forms.
        : $"search {p.Scored}/{p.Budget} assignments: [{string.Join(",", p.Blocks.Select(b => p.Dropped.Contains(b) ? $"{b}d" : $"{b}"))}] {p.ValTop1:P1}, best {p.BestValTop1:P1}";

    private static void PrintEpoch(EpochResult epoch) => AnsiConsole.MarkupLine(Markup.Escape(
        $"epoch {epoch.Epoch}: train loss {epoch.TrainLoss:F4} top-1 {epoch.TrainTop1:P2} | val loss {epoch.ValLoss:F4} top-1 {epoch.ValTop1:P2}" +
        $"{(epoch.IsBest ? " (best)" : "")} | {epoch.Seconds:F0} s" +
        (epoch.DataSeconds >= 0.5 && epoch.DataSeconds >= 0.05 * epoch.TrainSeconds ? $" (waited {epoch.DataSeconds:F1} s for data)" : "")));

    /// <summary>The progress display every verb uses: a bar per task with elapsed and remaining time.</summary>
    private static Progress Bars() => AnsiConsole.Progress()
        .AutoClear(false)
        .HideCompleted(false)
        .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(),
            new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn());

    /// <summary>True at most every 30 s: logs and pipes get a status line instead of a redrawn bar.</summary>
    private static Func<bool> StatusLineDue()
    {
        var last = DateTime.UtcNow;
        return () =>
        {
            if ((DateTime.UtcNow - last).TotalSeconds < 30)
            {
                return false;
            }
            last = DateTime.UtcNow;
            return true;
        };
    }
}
