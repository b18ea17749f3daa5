/** This mmb's version: checkpoints record it, and `--resume` refuses a checkpoint of another. Kept equal to package.json's (tested). */
export const mmbVersion = "0.1.0";
