using BenchmarkDotNet.Running;

// AdaTSQ.NET benchmarks. Examples:
//   dotnet run -c Release --project AdaTSQ.Benchmarks -- --filter '*QuantLinear*'
//   dotnet run -c Release --project AdaTSQ.Benchmarks -- --list flat
//   dotnet run -c Release --project AdaTSQ.Benchmarks -- quick-gemm 1024 1152 4608   (stopwatch, see QuickTiming)
//   dotnet run -c Release --project AdaTSQ.Benchmarks -- quick-dit DiT-S/2-b4 FP32,W8A8-int
if (!AdaTSQ.Benchmarks.QuickTiming.TryRun(args))
    BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
